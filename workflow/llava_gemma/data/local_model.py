"""A checkpoint folder on disk as a model source (config: ``local: <folder>``).

The toy study's LMs come this way from the repository (``models/``), as the paper's come from the
hub: the folder is checked and copied into ``data/models/<level>``, so every later rule reads the
same place whatever the source. A researcher's own checkpoint folder works the same way.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from llava_gemma.errors import UserError

# What a hub snapshot keeps (data/download.py); READMEs and training notes stay behind.
KEPT_SUFFIXES = (".json", ".safetensors", ".model", ".txt", ".jinja")


def install_local_model(source: Path, dest: Path) -> dict:
    """Copy an HF checkpoint folder's weights, configs and tokenizer into ``dest``; return their digests."""
    if not (source / "config.json").is_file():
        raise UserError(f"local model folder {source} has no config.json; point `local:` at a folder written "
                        "by save_pretrained.")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix in KEPT_SUFFIXES)
    if not any(p.suffix == ".safetensors" for p in files):
        raise UserError(f"local model folder {source} has no *.safetensors weights; save it with "
                        "save_pretrained(..., safe_serialization=True).")
    dest.mkdir(parents=True, exist_ok=True)
    digests = {}
    for path in files:
        shutil.copyfile(path, dest / path.name)
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"source": str(source), "files": digests}

