"""Failed questions said aloud: one warning line per benchmark whose questions could not all be asked.

A question fails when its image does not decode (eval/answers.py); it is answered "" and scored as
wrong, so the benchmark's value is lower than the model's. ``metrics.json`` counts them
(``failed_questions``, ``failures`` by reason); these lines put the count on the console at the end
of an evaluation job (its log) and, summed over the study's runs, at the end of a Snakemake run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

EVALUATIONS = ("eval", "eval_blind")


def failure_line(name: str, failed: int, questions: int, reasons: Mapping[str, int], where: str) -> str:
    why = ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items())) or "no reason recorded"
    return (f"WARNING {name}: {failed} of {questions} questions failed ({why}) and count as wrong answers; "
            f"they are named in {where} (field `error`).")


def warn_failures(results: Mapping[str, Mapping], out_dirs: Mapping[str, Path], stream: TextIO | None = None) -> int:
    """One line per benchmark of ``results`` (name -> its metrics) with failed questions; returns how many."""
    lines = [failure_line(name, m["failed_questions"], m["questions"], m.get("failures", {}),
                          str(Path(out_dirs[name]) / "samples.jsonl"))
             for name, m in results.items() if m.get("failed_questions")]
    for line in lines:
        print(line, file=stream or sys.stderr, flush=True)
    return len(lines)


def study_failure_lines(cells_dir: Path, runs: Iterable[str], benchmarks: Iterable[str]) -> list[str]:
    """Per evaluation and benchmark, the failed questions summed over ``runs`` (from their metrics.json)."""
    lines = []
    for evaluation in EVALUATIONS:
        for bench in benchmarks:
            failed = questions = 0
            reasons: dict[str, int] = {}
            hit = []
            for run in runs:
                path = Path(cells_dir) / run / evaluation / bench / "metrics.json"
                try:
                    m = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue  # not evaluated in this run of Snakemake (or not at all): nothing to say
                questions += int(m.get("questions") or 0)
                if m.get("failed_questions"):
                    failed += int(m["failed_questions"])
                    hit.append(run)
                    for reason, n in m.get("failures", {}).items():
                        reasons[reason] = reasons.get(reason, 0) + int(n)
            if failed:
                where = f"{cells_dir}/{{{','.join(hit)}}}/{evaluation}/{bench}/samples.jsonl" if len(hit) > 1 \
                    else f"{cells_dir}/{hit[0]}/{evaluation}/{bench}/samples.jsonl"
                name = bench if evaluation == "eval" else f"{bench} (blind control)"
                lines.append(failure_line(name, failed, questions, reasons, where))
    return lines
