"""Which study owns a working directory's data/ and results/ (a stamp file in each).

Snakemake judges a job done by its output files alone, so the toy study's files at the paper's
paths (data/raw/llava_pretrain/chat.json, data/raw/benchmarks/...) would count as the paper's: a
paper run in a toy clone would plan fewer jobs and evaluate on toy questions. Each study therefore
stamps the folders it writes (``data/STUDY``, ``results/STUDY``, holding the config's ``study``) the
first time it runs there, and refuses folders stamped by another study.
"""

from __future__ import annotations

from pathlib import Path

from llava_gemma.errors import UserError

STAMPED_FOLDERS = ("data", "results")
STAMP = "STUDY"


class StudyMismatch(UserError, RuntimeError):
    pass


def claim_study_folders(workdir: Path, study: str, folders: tuple[str, ...] = STAMPED_FOLDERS) -> None:
    """Stamp ``folders`` of ``workdir`` with ``study``, or raise if another study stamped one first."""
    workdir = Path(workdir)
    for name in folders:
        stamp = workdir / name / STAMP
        owner = stamp.read_text().strip() if stamp.is_file() else None
        if owner is not None and owner != study:
            raise StudyMismatch(
                f"{name}/ in {workdir} holds files of study {owner!r} ({name}/{STAMP}), not of {study!r} that this "
                f"config runs; run {study!r} in another working directory (snakemake --directory) or remove "
                f"{name}/ there first.")
    for name in folders:
        stamp = workdir / name / STAMP
        if not stamp.is_file():
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(study + "\n")
