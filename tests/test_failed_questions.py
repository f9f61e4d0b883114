"""Failed questions (an image that does not decode) never parse to an answer and are shown, not hidden:
a column of Table 1, a line of the model card, a warning line per benchmark at the end of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from llava_gemma.analysis.tables.model_card import write_model_card
from llava_gemma.analysis.tables.table1 import FAILED_COLUMN, build_table1, table1_display, write_table1
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.benchmarks.base import Question
from llava_gemma.eval.failures import study_failure_lines, warn_failures
from llava_gemma.eval.judge import Grade
from llava_gemma.study.config import Cell

from .test_model_card import PAPER_CELL, write_metrics
from .test_report_tables import CELLS, fixture_metrics


class GenerousJudge:
    """A judge that would give any answer full marks, and counts how often it is asked."""

    name = "generous"

    def __init__(self):
        self.calls = 0

    def grade(self, qid, question, answer, prediction):
        self.calls += 1
        return Grade(1.0, self.name)


# One question per scored benchmark whose target an empty prediction could be mistaken for.
QUESTIONS = {
    "pope": Question("random-1", None, "Is there a dog?", "yes", {"split": "random"}),  # eval_pope.py: "" is yes
    "mme": Question("q", None, "Is it red?", "yes", {"category": "color", "image": "1.jpg"}),
    "gqa": Question("q", None, "What?", "yes", {"structural": "verify"}),
    "mmvp": Question("q", None, "Which?", "A", {"pair": 1}),
    "scienceqa_img": Question("q", None, "Which?", "A", {"n_choices": 2, "subject": "natural science"}),
    # "a" and "the" normalise to "": the official normalisation would match an empty answer to them.
    "vqav2": Question("q", None, "What?", ["a"] * 5 + ["the"] * 5, {"answer_type": "other"}),
    "mmvet": Question("q", None, "What?", "a dog", {"capability": ["rec"], "judge_cache": "unused.jsonl"}),
}


@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_an_empty_prediction_never_parses_to_an_answer(name):
    bench = get_benchmark(name)
    judge = GenerousJudge()
    if name == "mmvet":
        bench = bench.with_options(judge="offline")
        bench._judges["unused.jsonl"] = judge
    record = bench.score(QUESTIONS[name], "")
    assert record.get("correct", False) is False and record.get("score", 0.0) == 0.0, record
    assert judge.calls == 0  # nothing to grade: no judge request is spent on a failed question
    from llava_gemma.analysis.statistics.outcomes import CLUSTER_FIELD

    if CLUSTER_FIELD.get(name) == "image":  # clustered with its image's other questions, answered or not
        assert "image" in record, record


def test_pope_counts_an_unanswered_question_as_wrong_and_never_as_yes():
    pope = get_benchmark("pope")
    questions = [Question(f"{split}-{i}", None, "Is there a dog?", label, {"split": split})
                 for split in ("random", "popular", "adversarial") for i, label in enumerate(("yes", "no", "yes"))]
    predictions = ["", "no", "yes"] * 3  # the first question of each split failed
    records = [pope.score(q, p) for q, p in zip(questions, predictions, strict=True)]
    metrics = pope.aggregate(records)
    assert metrics["random/accuracy"] == pytest.approx(2 / 3)
    assert metrics["random/recall"] == 0.5  # the unanswered "yes" is a missed positive
    assert metrics["random/yes_ratio"] == pytest.approx(1 / 3)  # and not a "yes" prediction
    assert metrics["random/precision"] == 1.0
    for key in ("split_mean/accuracy", "split_mean/f1", "pooled/accuracy"):
        assert metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"]
    assert metrics["pooled/accuracy"] == pytest.approx(2 / 3)


def _with_failures(path: Path, n: int) -> None:
    metrics = json.loads(path.read_text())
    metrics.update(failed_questions=n, failures={"undecodable image": n})
    path.write_text(json.dumps(metrics))


def test_table1_has_a_failed_questions_column(tmp_path):
    fixture_metrics(tmp_path / "cells")
    _with_failures(tmp_path / "cells/2b_clip_skip/eval/pope/metrics.json", 3)
    _with_failures(tmp_path / "cells/2b_clip_skip/eval/gqa/metrics.json", 1)
    table = build_table1(CELLS, ["pope", "gqa"], tmp_path / "cells").set_index("cell")
    assert table.loc["2b_clip_skip", "failed_questions"] == 4
    assert table.loc["2b_clip_skip", "failed_in"] == "gqa:1;pope:3"
    assert (table.drop("2b_clip_skip")["failed_questions"] == 0).all()
    shown = table1_display(table.reset_index()).set_index("cell")[FAILED_COLUMN]
    assert shown["2b_clip_skip"] == "4 (gqa 1, pope 3)" and shown["2b_clip_pretrain"] == "0"
    write_table1(table.reset_index(), tmp_path / "report")
    md = (tmp_path / "report/table1.md").read_text()
    assert "| 4 (gqa 1, pope 3) |" in md and "Failed questions: questions that could not be asked" in md
    assert "4 (gqa 1, pope 3)" in (tmp_path / "report/table1.tex").read_text()


def test_table1_sums_failed_questions_over_a_cells_replicates(tmp_path):
    runs = [Cell("2b", "clip", "pretrain", replicate=k) for k in (1, 2)]
    fixture_metrics(tmp_path / "cells", runs)
    for run in runs:
        _with_failures(tmp_path / "cells" / run.name / "eval/pope/metrics.json", 2)
    table = build_table1(runs, ["pope", "gqa"], tmp_path / "cells")
    assert list(table["failed_questions"]) == [4] and not math.isnan(table["pope_f1"].iloc[0])


def test_the_model_card_says_how_many_questions_failed(tmp_path):
    write_metrics(tmp_path / "eval")
    out = tmp_path / "card/README.md"
    write_model_card(PAPER_CELL, out, tmp_path / "eval")
    assert "Failed questions: none" in out.read_text()
    _with_failures(tmp_path / "eval/pope/metrics.json", 3)
    result = write_model_card(PAPER_CELL, out, tmp_path / "eval")
    assert result["failed_questions"] == {"pope": 3}
    assert "Failed questions: 3 (POPE 3): their images could not be decoded" in out.read_text()


def test_one_warning_line_per_benchmark_with_failures(tmp_path, capsys):
    results = {"pope": {"questions": 12, "failed_questions": 3, "failures": {"undecodable image": 3}},
               "gqa": {"questions": 5, "failed_questions": 0, "failures": {}}}
    assert warn_failures(results, {"pope": tmp_path / "pope", "gqa": tmp_path / "gqa"}) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"WARNING pope: 3 of 12 questions failed (undecodable image: 3) and count as wrong answers; "
                   f"they are named in {tmp_path / 'pope' / 'samples.jsonl'} (field `error`)."]

    fixture_metrics(tmp_path / "cells")
    for cell in ("2b_clip_skip", "7b_clip_skip"):
        _with_failures(tmp_path / f"cells/{cell}/eval/pope/metrics.json", 2)
    lines = study_failure_lines(tmp_path / "cells", [c.name for c in CELLS], ["pope", "gqa", "mme"])
    assert lines == [f"WARNING pope: 4 of 2400 questions failed (undecodable image: 4) and count as wrong answers; "
                     f"they are named in {tmp_path / 'cells'}/{{2b_clip_skip,7b_clip_skip}}/eval/pope/samples.jsonl "
                     "(field `error`)."]
