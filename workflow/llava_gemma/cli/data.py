"""Commands the data rules run: the toy world and its backbones, downloads, checks and preparation."""

from __future__ import annotations

import json
from pathlib import Path

from llava_gemma.cli.options import Commands, settings


def cmd_toy_world(a) -> dict:
    from llava_gemma.toy.tokenizer import train_toy_tokenizer
    from llava_gemma.toy.world import ToyWorldSpec, generate_toy_world

    spec = settings(a.settings)
    vocab = spec.pop("vocab_size", 1000)
    counts = generate_toy_world(Path(a.out), ToyWorldSpec(**spec))
    corpus = (Path(a.out) / "toy_text" / "corpus.txt").read_text().splitlines()
    train_toy_tokenizer(corpus, Path(a.out) / "toy_text" / "tokenizer", vocab_size=vocab)
    return counts


def cmd_pretrain_toy_lm(a) -> dict:
    from llava_gemma.toy.pretrain import pretrain_toy_language_model

    raw = Path(a.raw)
    return pretrain_toy_language_model(raw / "toy_text" / "corpus.txt", raw / "toy_text" / "tokenizer",
                                       Path(a.out), settings(a.settings), seed=a.seed)


def cmd_pretrain_toy_tower(a) -> dict:
    from llava_gemma.toy.towers import pretrain_toy_vision_tower

    return pretrain_toy_vision_tower(Path(a.raw) / "toy_text" / "tokenizer", Path(a.out), settings(a.settings),
                                     seed=a.seed)


def cmd_download(a) -> dict:
    from llava_gemma.data.download import download_hub_file, download_hub_folder, download_url
    from llava_gemma.data.sources import commit_for

    src = settings(a.settings)
    if "hub" in src:  # at the commit the preflight resolved (data/raw/sources.json), or the pin itself
        kind = src.get("repo_type", "dataset")
        revision = commit_for(Path(a.sources) if a.sources else None, src["hub"], kind, src.get("revision"))
        if "folder" in src:
            download_hub_folder(src["hub"], src["folder"], Path(a.out), kind, revision=revision)
        else:
            download_hub_file(src["hub"], src["file"], Path(a.out), kind, revision=revision, sha256=src.get("sha256"))
        return {"path": a.out, "hub": src["hub"], "commit": revision}
    download_url(src["url"], Path(a.out), sha256=src.get("sha256"), size=src.get("size"))
    return {"path": a.out}


def cmd_download_model(a) -> dict:
    from llava_gemma.data.download import download_model
    from llava_gemma.data.sources import commit_for

    src = settings(a.settings)
    revision = commit_for(Path(a.sources) if a.sources else None, a.repo, "model", src.get("revision"))
    download_model(a.repo, Path(a.out), revision=revision)
    return {"repo": a.repo, "commit": revision}


def cmd_check_sources(a) -> dict:
    from llava_gemma.data.sources import check_sources

    s = settings(a.settings)
    return check_sources(s["sources"], allow_unpinned=s.get("allow_unpinned", False), out=Path(a.out))


def cmd_install_model(a) -> dict:
    from llava_gemma.data.local_model import install_local_model

    return install_local_model(Path(a.folder), Path(a.out))


def cmd_extract(a) -> dict:
    from llava_gemma.data.extract import extract_zip

    spec = settings(a.settings)
    n = extract_zip(Path(a.archive), Path(a.into), strip=spec.get("strip", 0), members=spec.get("members"),
                    expect=spec.get("expect"))
    result = {"archive": a.archive, "into": a.into, "files": n}
    Path(a.out).write_text(json.dumps(result) + "\n")
    return result


def cmd_fetch_ocr_vqa(a) -> dict:
    from llava_gemma.data.ocr_vqa import FetchBudget, fetch_ocr_vqa_covers

    s = settings(a.settings)
    names = {"budget_seconds": "seconds", "probe": "probe", "max_failure_rate": "max_failure_rate"}
    budget = FetchBudget(**{field: s[key] for key, field in names.items() if key in s})
    return fetch_ocr_vqa_covers(Path(a.mix), Path(a.into), Path(a.out), source=s["source"],
                                dataset_json=Path(a.dataset_json) if a.dataset_json else None,
                                threads=s.get("threads", 16), timeout=s.get("timeout", 30.0),
                                retries=s.get("retries", 3), budget=budget)


def cmd_prepare(a) -> dict:
    from llava_gemma.data.prepare import prepare_dataset
    from llava_gemma.model.assemble import build_processor, image_token_count, prepare_tokenizer
    from llava_gemma.model.vocabulary import write_vocabulary
    from llava_gemma.study.backbone_sources import check_role

    # A hub backbone is first read here (validation cannot read the hub): a wrong kind is one sentence.
    for folder, kind in [(a.tokenizer, "language_model"), *((t, "vision_tower") for t in a.towers)]:
        check_role(Path(folder), kind, f"the {kind} of level {Path(folder).name!r}", str(folder))
    tokenizer = prepare_tokenizer(a.tokenizer)
    # Length filtering counts the image tokens of the hungriest tower in the grid.
    image_tokens = max(image_token_count(build_processor(t, prepare_tokenizer(a.tokenizer))) for t in a.towers)
    s = settings(a.settings)
    report = prepare_dataset(Path(a.records), Path(a.image_root), tokenizer, Path(a.out), fmt=a.format,
                             max_length=s["max_length"], image_tokens=image_tokens, default_source=a.source,
                             max_drop_fraction=s["max_drop_fraction"], image_check=s.get("image_check", "decode"),
                             workers=a.workers)
    write_vocabulary(Path(a.out), tokenizer, a.tokenizer)  # training checks its LM against it
    return report


def register(r: Commands) -> None:
    r.rule("toy-world", cmd_toy_world,
           "generate the toy world (scenes, captions, instructions, benchmarks) and its tokenizer", "out")
    r.rule("pretrain-toy-lm", cmd_pretrain_toy_lm, "pretrain a tiny Gemma-architecture LM on the toy world's text",
           "raw", "out").add_argument("--seed", type=int, default=0, help="random seed")
    r.rule("pretrain-toy-tower", cmd_pretrain_toy_tower,
           "pretrain a tiny CLIP or DINOv2 tower on fresh toy scenes (toy/towers.py)",
           "raw", "out").add_argument("--seed", type=int, default=0, help="random seed")
    sources_help = "data/raw/sources.json: the commit the preflight resolved for each hub source"
    r.rule("download", cmd_download, "download one raw file (hub file or URL), resumable and checksummed",
           "out").add_argument("--sources", default=None, help=sources_help)
    r.rule("download-model", cmd_download_model, "download a model repository from the hub into a folder",
           "repo", "out").add_argument("--sources", default=None, help=sources_help)
    r.rule("check-sources", cmd_check_sources,
           "before any download: refuse unpinned or gated-without-HF_TOKEN hub sources, record their commits", "out")
    r.rule("install-model", cmd_install_model,
           "copy a checkpoint folder on disk (a `local:` source) into a folder, as a download would", "folder", "out")
    r.rule("extract", cmd_extract, "unpack a zip archive and write a marker file listing what was unpacked",
           "archive", "into", "out")
    r.rule("fetch-ocr-vqa", cmd_fetch_ocr_vqa,
           "fetch OCR-VQA's book covers (or audit a mirror's) and report the dead ones", "mix", "into", "out",
           ).add_argument("--dataset_json", default=None, help="OCR-VQA's dataset.json (source: urls)")
    prepare = r.rule("prepare", cmd_prepare,
                     "filter and tokenize a training set once into Parquet, with a filter report",
                     "records", "image_root", "tokenizer", "format", "source", "out")
    prepare.add_argument("--towers", nargs="+", required=True,
                         help="every tower folder of the grid (length filtering counts the most image tokens)")
    prepare.add_argument("--workers", type=int, default=None, help="processes (default: the usable CPUs)")
