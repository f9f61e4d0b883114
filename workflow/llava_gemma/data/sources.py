"""Which hub commit every source is read at, and whether this machine may read it: the preflight job.

Every hub source of a config (a ``downloads`` entry with ``hub``, a grid level's ``hub`` backbone)
names a ``revision``: a 40-hex commit id, or ``UNPINNED`` where none was pinned yet. ``check_sources``
runs once, on the submitting host, before any download job:

- an unpinned source is refused (one sentence saying how to read the commit id off the hub) unless
  the config sets ``allow_unpinned: true``; then it is read at the commit its default branch shows now;
- a gated repo (Gemma) without ``HF_TOKEN`` is refused, naming the repo and the variable, and with a
  token the hub is asked whether that account may read it, so no cluster job fails on it later;
- every source's commit is written to ``data/raw/sources.json``: the downloads fetch exactly those
  commits (an unpinned branch that moves during a run cannot mix two commits), and study.csv lists them.

It needs the network, so it is a local rule on cluster profiles, never run at parse time.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from llava_gemma.errors import UserError

UNPINNED = "UNPINNED"
COMMIT = re.compile(r"^[0-9a-f]{40}$")
TOKEN_ENV = "HF_TOKEN"


class SourceError(UserError, RuntimeError):
    """A hub source this run may not read: unpinned, gated without a token, or refused by the hub."""


def source_key(repo: str, repo_type: str, revision: str | None) -> str:
    """How ``sources.json`` names a (repo, type, revision): ``dataset:lmms-lab/MME@<revision>``."""
    return f"{repo_type}:{repo}@{revision or UNPINNED}"


def hub_sources(config: dict[str, Any], models: dict[str, dict]) -> list[dict[str, str]]:
    """Every hub source of ``config``'s downloads and of the backbones ``models`` (name -> source), once each."""
    found: dict[str, dict[str, str]] = {}
    for path, src in config.get("downloads", {}).items():
        if "hub" in src:
            entry = dict(where=f"downloads.{path}", hub=src["hub"], repo_type=src.get("repo_type", "dataset"),
                         revision=src.get("revision", UNPINNED))
            found.setdefault(source_key(entry["hub"], entry["repo_type"], entry["revision"]), entry)
    for name, src in sorted(models.items()):
        if "hub" in src:
            entry = dict(where=f"model {name}", hub=src["hub"], repo_type="model",
                         revision=src.get("revision", UNPINNED))
            found.setdefault(source_key(entry["hub"], "model", entry["revision"]), entry)
    return [found[k] for k in sorted(found)]


def unpinned(sources: list[dict[str, str]]) -> list[dict[str, str]]:
    return [s for s in sources if not COMMIT.match(s["revision"])]


def pin_hint(source: dict[str, str]) -> str:
    return (f"python -c \"from huggingface_hub import HfApi; print(HfApi().repo_info('{source['hub']}', "
            f"repo_type='{source['repo_type']}').sha)\"")


def check_sources(sources: list[dict[str, str]], *, allow_unpinned: bool, out: Path,
                  token: str | None = None) -> dict[str, dict]:
    """Refuse what this run may not read, then write every source's commit to ``out`` (see the module docstring)."""
    loose = unpinned(sources)
    if loose and not allow_unpinned:
        first = loose[0]
        more = f" (and {len(loose) - 1} more)" if len(loose) > 1 else ""
        raise SourceError(f"{first['where']} ({first['hub']}) is not pinned (revision: {first['revision']}){more}; "
                          f"set its revision to a commit id, which `{pin_hint(first)}` prints, or set "
                          "allow_unpinned: true to read the default branches as they are today.")
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    resolved = {}
    for s in sources:
        resolved[source_key(s["hub"], s["repo_type"], s["revision"])] = {
            **{k: s[k] for k in ("hub", "repo_type", "revision")}, **_resolve(s, token)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    part.write_text(json.dumps(resolved, indent=1, sort_keys=True) + "\n")
    part.replace(out)
    return resolved


def _resolve(source: dict[str, str], token: str | None) -> dict[str, Any]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    from llava_gemma.data.download import hub_errors

    repo, kind = source["hub"], source["repo_type"]
    revision = None if source["revision"] == UNPINNED else source["revision"]
    api = HfApi(token=token or False)
    with hub_errors(repo, f"revision {revision or 'main'}"):
        info = api.repo_info(repo, repo_type=kind, revision=revision)
    gated = bool(getattr(info, "gated", False))
    if gated and not token:
        raise SourceError(f"{repo} is gated and {TOKEN_ENV} is not set: accept its licence on the hub and export "
                          f"{TOKEN_ENV} (a token of that account) where snakemake starts, then rerun.")
    if gated:
        try:
            api.auth_check(repo, repo_type=kind, token=token)
        except GatedRepoError:
            raise SourceError(f"{repo} is gated and the account of {TOKEN_ENV} may not read it: accept its licence "
                              "on the hub with that account, or export the token of an account that has.") from None
    return {"commit": info.sha, "gated": gated}


def commit_for(sources_json: Path | None, repo: str, repo_type: str, revision: str | None) -> str | None:
    """The commit the preflight resolved for this source (what a download fetches); the pin itself without one."""
    revision = revision or UNPINNED
    if sources_json is not None and Path(sources_json).is_file():
        entry = json.loads(Path(sources_json).read_text()).get(source_key(repo, repo_type, revision))
        if entry:
            return entry["commit"]
    if revision == UNPINNED:
        return None
    return revision
