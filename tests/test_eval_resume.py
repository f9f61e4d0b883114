"""Evaluation survives being killed, and an image that cannot be decoded is a failed question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llava_gemma.eval import answers as answers_module
from llava_gemma.eval.answers import PARTIAL_PREFIX
from llava_gemma.eval.run import run_benchmark
from llava_gemma.model.assemble import assemble_llava

from .conftest import COLOURS, draw_scene

SPLITS = ("adversarial", "popular", "random")
TIMING = ("wall_seconds", "questions_per_second")


def write_pope(root: Path, n: int = 4, corrupt: int | None = None) -> None:
    """POPE's files with real images of several sizes; image ``corrupt`` holds bytes no decoder reads."""
    (root / "val2014").mkdir(parents=True)
    colours = list(COLOURS)
    for i in range(1, n + 1):
        path = root / "val2014" / f"COCO_val2014_{i:012d}.jpg"
        if i == corrupt:
            path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        else:
            draw_scene(colours[i % 3], size=40 + 8 * i).save(path)
    for split in SPLITS:
        rows = [{"question_id": i, "image": f"COCO_val2014_{i:012d}.jpg", "label": "yes" if i % 2 else "no",
                 "text": f"Is there a {colours[(i + len(split)) % 3]} circle in the image?" + "?" * i}
                for i in range(1, n + 1)]
        (root / f"coco_pope_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def cell(tiny_backbones):
    model, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"])
    return model.eval(), processor


def outputs(out: Path) -> tuple[str, dict]:
    metrics = json.loads((out / "metrics.json").read_text())
    return (out / "samples.jsonl").read_text(), {k: v for k, v in metrics.items() if k not in TIMING}


class Killed(Exception):
    pass


def test_a_killed_evaluation_resumes_and_equals_an_uninterrupted_one(cell, tmp_path, monkeypatch):
    model, processor = cell
    write_pope(tmp_path / "pope")
    settings = dict(batch_size=2, max_new_tokens=3)  # 12 questions: 6 batches
    run_benchmark(model, processor, "pope", tmp_path / "pope", tmp_path / "whole", **settings)

    real = answers_module.answer_rows
    calls: list[int] = []

    def dies_after_three(*args, **kwargs):
        if len(calls) == 3:
            raise Killed
        calls.append(len(args[4]))
        return real(*args, **kwargs)

    work = tmp_path / "work"
    monkeypatch.setattr(answers_module, "answer_rows", dies_after_three)
    with pytest.raises(Killed):
        run_benchmark(model, processor, "pope", tmp_path / "pope", tmp_path / "out", work_dir=work, **settings)
    partial = work / f"{PARTIAL_PREFIX}0.jsonl"
    assert len(partial.read_text().splitlines()) == 6 and not (tmp_path / "out" / "metrics.json").exists()
    with partial.open("a") as f:  # a kill in the middle of the fourth batch's write
        f.write('{"batch": 3, "index": 0, "id": "x", "predic')

    calls.clear()
    monkeypatch.setattr(answers_module, "answer_rows", lambda *a, **k: calls.append(len(a[4])) or real(*a, **k))
    metrics = run_benchmark(model, processor, "pope", tmp_path / "pope", tmp_path / "out", work_dir=work, **settings)
    assert calls == [2, 2, 2]  # only the three batches the killed run had not finished
    assert outputs(tmp_path / "out") == outputs(tmp_path / "whole")
    assert metrics["questions"] == 12 and metrics["failed_questions"] == 0
    assert not work.exists()  # the outputs are whole; a forced rerun starts afresh


def test_partial_answers_of_other_settings_are_not_resumed(cell, tmp_path, monkeypatch):
    model, processor = cell
    write_pope(tmp_path / "pope", n=2)
    work = tmp_path / "work"
    run_benchmark(model, processor, "pope", tmp_path / "pope", tmp_path / "a", batch_size=2, max_new_tokens=1,
                  work_dir=work)
    stale = {"fingerprint": "another run"}
    work.mkdir()
    (work / "identity.json").write_text(json.dumps(stale))
    (work / f"{PARTIAL_PREFIX}0.jsonl").write_text("".join(
        json.dumps({"batch": k, "index": i, "id": "?", "prediction": "stale", "error": None}) + "\n"
        for k in range(3) for i in (2 * k, 2 * k + 1)))
    run_benchmark(model, processor, "pope", tmp_path / "pope", tmp_path / "b", batch_size=2, max_new_tokens=1,
                  work_dir=work)
    assert "stale" not in (tmp_path / "b" / "samples.jsonl").read_text()
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")


def test_an_undecodable_image_is_a_failed_question_not_a_crash(cell, tmp_path):
    model, processor = cell
    write_pope(tmp_path / "pope", n=4, corrupt=2)
    metrics = run_benchmark(model, processor, "pope", tmp_path / "pope", tmp_path / "out", batch_size=3,
                            max_new_tokens=2)
    records = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    failed = [r for r in records if "error" in r]
    assert sorted(r["id"] for r in failed) == [f"{split}-2" for split in SPLITS]
    assert all(r["prediction"] == "" and r["error"].startswith("undecodable image: ")
                                    for r in failed)
    assert metrics["questions"] == 12 and metrics["failed_questions"] == 3
    assert metrics["failures"] == {"undecodable image": 3}
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["failed_questions"] == 3


def test_the_blind_control_never_opens_the_image_so_fails_no_question(cell, tmp_path):
    model, processor = cell
    write_pope(tmp_path / "pope", n=4, corrupt=2)
    metrics = run_benchmark(model, processor, "pope", tmp_path / "pope", tmp_path / "out", batch_size=3,
                            max_new_tokens=1, blind=True)
    assert metrics["questions"] == 12 and metrics["failed_questions"] == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert not any("error" in r for r in records)


def test_a_failed_question_scores_as_wrong_and_the_evaluation_ends_with_a_warning(cell, tmp_path, capsys):
    model, processor = cell
    write_pope(tmp_path / "pope", n=4, corrupt=2)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    from llava_gemma.eval.run import evaluate_benchmark

    metrics = evaluate_benchmark(tmp_path / "model", "pope", tmp_path / "pope", tmp_path / "out", batch_size=3,
                                 max_new_tokens=1)
    records = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    failed = [r for r in records if "error" in r]
    assert len(failed) == 3 and all(r["parsed"] == "none" and r["correct"] is False for r in failed)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("WARNING pope: 3 of 12 questions failed (undecodable image: 3) and count as wrong")
    assert metrics["failed_questions"] == 3
