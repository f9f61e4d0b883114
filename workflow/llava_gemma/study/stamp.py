"""Which study owns a working directory's data/ and results/ (a stamp file in each).

Snakemake judges a job done by its output files alone, so the toy study's files at the paper's
paths (data/raw/llava_pretrain/chat.json, data/raw/benchmarks/...) would count as the paper's: a
paper run in a toy clone would plan fewer jobs and evaluate on toy questions. Each study therefore
stamps the folders it writes (``data/STUDY``, ``results/STUDY``, holding the config's ``study``) the
first time it runs there, and refuses folders stamped by another study.

Checking and stamping are apart: every parse of the Snakefile checks (a dry run included, read-only),
and only a run that is about to execute jobs stamps (Snakemake's ``onstart``, which a dry run skips),
so ``snakemake -n`` with one study's config leaves nothing behind that would refuse another study.
"""

from __future__ import annotations

from pathlib import Path

from llava_gemma.errors import UserError

STAMPED_FOLDERS = ("data", "results")
STAMP = "STUDY"


class StudyMismatch(UserError, RuntimeError):
    pass


def check_study_folders(workdir: Path, study: str, folders: tuple[str, ...] = STAMPED_FOLDERS) -> None:
    """Raise if another study stamped one of ``folders`` of ``workdir``; writes nothing."""
    workdir = Path(workdir)
    for name in folders:
        stamp = workdir / name / STAMP
        owner = stamp.read_text().strip() if stamp.is_file() else None
        if owner is not None and owner != study:
            raise StudyMismatch(
                f"{name}/ in {workdir} holds files of study {owner!r} ({name}/{STAMP}), not of {study!r} that this "
                f"config runs; run {study!r} in another working directory (snakemake --directory) or remove "
                f"{name}/ there first.")


def stamp_study_folders(workdir: Path, study: str, folders: tuple[str, ...] = STAMPED_FOLDERS) -> None:
    """Stamp ``folders`` of ``workdir`` with ``study`` (after checking them): the folders are this study's now."""
    check_study_folders(workdir, study, folders)
    for name in folders:
        stamp = Path(workdir) / name / STAMP
        if not stamp.is_file():
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(study + "\n")
