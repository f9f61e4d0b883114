"""PyTorch ``.bin`` checkpoints to safetensors, once, at download time.

Some hub repos publish only pickled weights (OpenAI's CLIP repos: ``pytorch_model.bin``). Everything
downstream of ``download_model`` reads safetensors, so such a checkpoint is converted on disk when it
arrives: ``torch.load(weights_only=True)`` (no arbitrary code runs from the pickle), tensors made
contiguous and unshared (safetensors refuses aliases), the ``.bin`` files removed afterwards. A
sharded checkpoint (``pytorch_model.bin.index.json``) becomes ``model-XXXXX-of-YYYYY.safetensors``
with ``model.safetensors.index.json``, as ``save_pretrained`` names them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from llava_gemma.errors import UserError

BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"


class CheckpointError(UserError, RuntimeError):
    pass


def has_safetensors(folder: Path) -> bool:
    return any(Path(folder).glob("*.safetensors"))


def convert_bin_checkpoint(folder: Path) -> list[Path]:
    """Convert the ``.bin`` weights in ``folder`` to safetensors in place; returns the files written."""
    folder = Path(folder)
    if (folder / BIN_INDEX).is_file():
        index = json.loads((folder / BIN_INDEX).read_text())
        shards = sorted(set(index["weight_map"].values()))
        names = {s: f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i, s in enumerate(shards, 1)}
        written = [_convert(folder / s, folder / names[s]) for s in shards]
        weight_map = {k: names[v] for k, v in index["weight_map"].items()}
        _write_atomic(folder / SAFE_INDEX, json.dumps({"metadata": index.get("metadata", {}),
                                                       "weight_map": weight_map}, indent=2) + "\n")
        for s in shards:
            (folder / s).unlink()
        (folder / BIN_INDEX).unlink()
        return [*written, folder / SAFE_INDEX]
    if (folder / BIN_WEIGHTS).is_file():
        written = [_convert(folder / BIN_WEIGHTS, folder / SAFE_WEIGHTS)]
        (folder / BIN_WEIGHTS).unlink()
        return written
    raise CheckpointError(f"{folder} holds neither safetensors nor {BIN_WEIGHTS}; check the repo's files on the hub "
                          "and its id in the config.")


def _convert(src: Path, dest: Path) -> Path:
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling error names the offending global; keep it in the sentence
        raise CheckpointError(f"{src} cannot be read as plain tensors ({type(err).__name__}); delete the folder "
                              "and rerun download_model.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    tensors = {k: v.detach().clone().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    part = dest.with_name(dest.name + ".part")
    save_file(tensors, str(part), metadata={"format": "pt"})
    os.replace(part, dest)
    return dest


def _write_atomic(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)
