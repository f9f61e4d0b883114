"""Resumable checkpoints that are either complete or ignored.

HF Trainer writes ``checkpoint-N/`` in place, file by file, and on every rank; a crash mid-save
leaves a folder that looks like a checkpoint. So a checkpoint counts only once it carries a
manifest (``COMPLETE.json``) written last, atomically, by rank 0 after every rank has finished
and every file is on disk. The manifest lists each file and its size (a checkpoint half deleted by
the Trainer's rotation no longer matches it) and the run it belongs to (world size and a
fingerprint of the settings and inputs): a checkpoint of another configuration is never resumed.

On start, ``prepare_resume`` picks the newest complete checkpoint of this run; rank 0 deletes the
rest that cannot be resumed (incomplete or foreign), so the Trainer never rotates into or over them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

MANIFEST = "COMPLETE.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class RunIdentity:
    """What must match for a checkpoint to be resumable by this run."""

    fingerprint: str
    world_size: int


def run_identity(settings: dict, inputs: list[Path | None], world_size: int) -> RunIdentity:
    """A fingerprint of the run's settings and of its input files' sizes and mtimes."""
    stamp = []
    for path in inputs:
        if path is None:
            stamp.append(None)
            continue
        st = path.stat()
        stamp.append([str(path), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"settings": settings, "inputs": stamp}, sort_keys=True, default=str)
    return RunIdentity(hashlib.sha256(blob.encode()).hexdigest()[:16], world_size)


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(checkpoint: Path, identity: RunIdentity, step: int) -> None:
    """Flush every file of ``checkpoint``, then publish the manifest atomically (temp file + rename)."""
    files = {}
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file() and p.name != MANIFEST):
        _fsync(path)
        files[str(path.relative_to(checkpoint))] = path.stat().st_size
    manifest = {"step": step, "fingerprint": identity.fingerprint, "world_size": identity.world_size,
                "files": files}
    tmp = checkpoint / f".{MANIFEST}.tmp"
    with tmp.open("w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, checkpoint / MANIFEST)
    _fsync(checkpoint)  # the rename itself is durable once the directory is


def read_manifest(checkpoint: Path) -> dict | None:
    """The manifest if the checkpoint is complete (every listed file present with its size), else None."""
    try:
        manifest = json.loads((checkpoint / MANIFEST).read_text())
        files = manifest["files"]
        for rel, size in files.items():
            if (checkpoint / rel).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, half-written or being deleted: not complete
    return manifest


def resumable(checkpoint: Path, identity: RunIdentity) -> bool:
    manifest = read_manifest(checkpoint)
    return (manifest is not None and manifest.get("fingerprint") == identity.fingerprint
            and manifest.get("world_size") == identity.world_size)


def checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    """``checkpoint-N`` folders of ``work_dir``, oldest first."""
    if not work_dir.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in work_dir.iterdir()]
    return sorted((step, p) for step, p in found if step is not None)


def newest_resumable(work_dir: Path, identity: RunIdentity) -> Path | None:
    usable = [p for _, p in checkpoints(work_dir) if resumable(p, identity)]
    return usable[-1] if usable else None


def prepare_resume(work_dir: Path, identity: RunIdentity, *, is_main: bool) -> Path | None:
    """The checkpoint to resume from (None: start fresh). Every rank gets the same answer, since
    only folders that are not resumable are deleted, and only by rank 0."""
    chosen = newest_resumable(work_dir, identity)
    if is_main:
        for _, path in checkpoints(work_dir):
            if not resumable(path, identity):
                why = "incomplete" if read_manifest(path) is None else "from another configuration or world size"
                print(f"checkpoints: removing {path} ({why})", file=sys.stderr, flush=True)
                shutil.rmtree(path, ignore_errors=True)
    return chosen


class ManifestCallback(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has saved it on every rank.

    ``on_save`` runs after ``_save_checkpoint`` returns (model, optimizer and DeepSpeed shards,
    scheduler, RNG, trainer state, rotation), on every rank: a barrier makes rank 0 wait for
    the others' shards before it writes the manifest.
    """

    def __init__(self, identity: RunIdentity):
        self.identity = identity

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_manifest(checkpoint, self.identity, state.global_step)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # no rank runs ahead into the next save before this one is published
        return control


def discard_checkpoints(work_dir: Path) -> None:
    """Delete every checkpoint once the stage's outputs are written (they are tens of GB on the
    paper study, and a forced rerun must train afresh rather than resume the final step)."""
    for _, path in checkpoints(work_dir):
        shutil.rmtree(path, ignore_errors=True)
