"""``llava-gemma rehearse build|serve``: the loopback mirror of every source a study config names.

    llava-gemma rehearse build --configfile config.yaml --out /tmp/mirror    # generate the stand-ins (~30 s)
    llava-gemma rehearse serve --root /tmp/mirror [--port 8765]           # serve them; prints the settings

``serve`` prints the settings that point the pipeline at the mirror, unchanged otherwise::

    export HF_ENDPOINT=http://127.0.0.1:8765                    # huggingface_hub's own setting
    export HF_TOKEN=hf_rehearsal_loopback_only                  # opens the gated Gemma stand-ins
    export LLAVA_GEMMA_URL_MIRROR=http://127.0.0.1:8765/urls    # scheme://host/path -> <base>/host/path

and the one manual step the paper config has: OCR-VQA's dataset.json, which a user places by hand,
lies in ``<root>/manual/`` (copy it to data/raw/ of the run).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import yaml

from llava_gemma.errors import UserError
from llava_gemma.rehearsal.models import build_clip, build_dinov2, build_gemma
from llava_gemma.rehearsal.server import MirrorServer
from llava_gemma.rehearsal.sources import NoStandIn, build_sources

EXPECTED = "expected_questions.json"
# Gated on the hub (a licence to accept, then a token): their stand-ins are gated too.
GATED = {"google/gemma-2b-it", "google/gemma-7b-it"}
# Hub id -> how its stand-in is built (the architecture each real checkpoint has).
REPO_MODELS = {
    "google/gemma-2b-it": lambda out, corpus: build_gemma(out, corpus, "2b"),
    "google/gemma-7b-it": lambda out, corpus: build_gemma(out, corpus, "7b", seed=1),
    "openai/clip-vit-large-patch14-336": lambda out, corpus: build_clip(out),
    "facebook/dinov2-giant": lambda out, corpus: build_dinov2(out),
}


def build_mirror(root: Path, config_path: Path, seed: int = 0) -> dict:
    """Stand-ins of every model and download ``config_path`` names, under ``root``; returns what was built."""
    root, config = Path(root), yaml.safe_load(Path(config_path).read_text())
    questions, corpus = build_sources(root, config, seed)
    models = {}
    from llava_gemma.study.recipe import MODEL_KEYS

    for i, factor in enumerate(config["grid"]):
        for level, overrides in factor["levels"].items():
            repo = next((overrides[k].get("hub") for k in MODEL_KEYS if k in overrides), None)
            if repo is None:
                continue
            if repo not in REPO_MODELS:
                raise NoStandIn(f"the rehearsal has no stand-in for grid[{i}].levels.{level} ({repo}); add one to "
                                "REPO_MODELS in workflow/llava_gemma/rehearsal/build.py.")
            REPO_MODELS[repo](root / "hub" / "model" / repo, corpus)
            models[level] = repo
    (root / "gated.json").write_text(json.dumps(sorted(f"model/{r}" for r in models.values() if r in GATED)) + "\n")
    (root / "revisions.json").write_text(json.dumps(pinned_revisions(config), indent=1, sort_keys=True) + "\n")
    (root / EXPECTED).write_text(json.dumps(questions, indent=1) + "\n")
    return {"root": str(root), "models": models, "questions": questions}


def pinned_revisions(config: dict) -> dict[str, str]:
    """``<kind>/<repo>`` -> the commit the config pins it to: the mirror serves each repo under that commit id."""
    from llava_gemma.data.sources import COMMIT
    from llava_gemma.study.recipe import MODEL_KEYS

    pins = {f"{src.get('repo_type', 'dataset')}/{src['hub']}": src["revision"]
            for src in config.get("downloads", {}).values() if "hub" in src and COMMIT.match(src.get("revision", ""))}
    for factor in config["grid"]:
        for overrides in factor["levels"].values():
            for kind in MODEL_KEYS:
                src = overrides.get(kind, {})
                if "hub" in src and COMMIT.match(src.get("revision", "")):
                    pins[f"model/{src['hub']}"] = src["revision"]
    return pins


def serve(root: Path, port: int = 0, ready: threading.Event | None = None) -> None:
    """Serve ``root`` until interrupted (SIGINT or SIGTERM), printing the settings that point at it."""
    if not (Path(root) / EXPECTED).is_file():
        raise UserError(f"{root} holds no rehearsal mirror; build one first with `llava-gemma rehearse build`.")
    server = MirrorServer(Path(root), port).start()
    for key, value in server.environment().items():
        print(f"export {key}={value}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
