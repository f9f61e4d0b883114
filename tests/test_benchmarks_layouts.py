"""Benchmark file layouts: MME's release folders and its parquet give the same questions; VQAv2
test-dev writes the EvalAI submission file instead of a score."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.benchmarks.base import SHORT_ANSWER_SUFFIX
from llava_gemma.eval.benchmarks.mme import MMEBenchmark
from llava_gemma.eval.benchmarks.vqav2_testdev import FULL_TEST_FILE, QUESTIONS_FILE, submission_entries
from PIL import Image

from .conftest import draw_scene

# subtask -> image file -> its two (question, answer) lines, as in MME_Benchmark_release_version
MME_CONTENT = {
    "existence": {"000000006040.jpg": [("Is there a train in this image?", "Yes"),
                                       ("Is there a bed in this image?", "No")]},
    "artwork": {"10002.jpg": [("Is this artwork created by donatello?", "Yes"),
                              ("Is this artwork created by van gogh?", "No")],
                "10049.jpg": [("Is this artwork titled virgin and child?", "No"),
                              ("Is this artwork titled the last supper?", "Yes")]},
    "code_reasoning": {"0001.png": [("Will the code print hello?", "Yes"), ("Will the code print 3?", "No")]},
}
NESTED = {"artwork"}  # images/ + questions_answers_YN/; the others keep the .txt beside the image
SUFFIX = " Please answer yes or no."


def _image_bytes(name: str, colour: str) -> bytes:
    buf = io.BytesIO()
    draw_scene(colour).save(buf, "PNG" if name.endswith(".png") else "JPEG")
    return buf.getvalue()


def _colour(i: int) -> str:
    return ("red", "blue", "green")[i % 3]


def write_release(root, extra_lines: str = "") -> None:
    for t, (task, images) in enumerate(MME_CONTENT.items()):
        for i, (name, qa) in enumerate(images.items()):
            image_dir = root / task / "images" if task in NESTED else root / task
            qa_dir = root / task / "questions_answers_YN" if task in NESTED else root / task
            image_dir.mkdir(parents=True, exist_ok=True)
            qa_dir.mkdir(parents=True, exist_ok=True)
            (image_dir / name).write_bytes(_image_bytes(name, _colour(t + i)))
            lines = "".join(f"{q}{SUFFIX}\t{a}\n" for q, a in qa)
            (qa_dir / f"{name.rsplit('.', 1)[0]}.txt").write_text(lines + extra_lines)


def write_parquet(root) -> None:
    rows = [{"question_id": f"{task}/{name}", "image": {"bytes": _image_bytes(name, _colour(t + i)), "path": name},
             "question": q + SUFFIX, "answer": a, "category": task}
            for t, (task, images) in enumerate(MME_CONTENT.items())
            for i, (name, qa) in enumerate(images.items()) for q, a in qa]
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "test-00000-of-00001.parquet")


def _view(questions) -> list[tuple]:
    return [(q.qid, q.prompt, q.target, q.meta["category"], q.meta["image"],
             Image.open(q.image_path).convert("RGB").tobytes()) for q in questions]


def test_mme_release_folders_and_parquet_give_the_same_questions(tmp_path):
    write_release(tmp_path / "release" / "MME_Benchmark_release_version")
    write_parquet(tmp_path / "hub")
    with pytest.warns(UserWarning, match="lacks the subtask folders"):  # 11 of 14 subtasks in this fixture
        from_folders = MMEBenchmark().load(tmp_path / "release")
    from_parquet = MMEBenchmark().load(tmp_path / "hub")
    assert sorted(_view(from_folders)) == sorted(_view(from_parquet))
    first = next(q for q in from_folders if q.qid == "artwork/10049.jpg#0")
    assert first.prompt == "Is this artwork titled virgin and child?" + SHORT_ANSWER_SUFFIX and first.target == "no"
    release = tmp_path / "release" / "MME_Benchmark_release_version"
    assert first.image_path == release / "artwork" / "images" / "10049.jpg"
    assert len(from_folders) == 8 and {q.meta["image"] for q in from_folders} == {
        f"{task}/{name}" for task, images in MME_CONTENT.items() for name in images}


def test_mme_release_folder_directly_under_root_skips_malformed_lines(tmp_path):
    write_release(tmp_path, extra_lines="Is this a question without an answer?\n")
    (tmp_path / "existence" / "orphan.txt").write_text(f"Is there a cat?{SUFFIX}\tYes\n")  # no orphan.jpg
    with pytest.warns(UserWarning) as caught:
        questions = MMEBenchmark().load(tmp_path)
    assert any("skipped 5 malformed questions out of 13" in str(w.message) for w in caught)
    assert len(questions) == 8
    metrics = MMEBenchmark().aggregate([{**MMEBenchmark().score(q, "Yes"), "correct": True} for q in questions])
    assert metrics["artwork/acc_plus"] == 100 and metrics["cognition"] == 200  # code_reasoning alone: 100 + 100


def test_mme_without_either_layout_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MME: .* holds neither .*parquet.* nor the release folders"):
        MMEBenchmark().load(tmp_path)


# ------------------------------------------------------------------------------- VQAv2 test-dev


def write_testdev(root, full: bool) -> None:
    questions = [{"image_id": 1, "question": "How many dogs?", "question_id": 1000},
                 {"image_id": 2, "question": "What is it?", "question_id": 2000},
                 {"image_id": 2, "question": "Broken", "question_id": "x"}]  # malformed id: skipped
    (root / "test2015").mkdir(parents=True)
    for image_id in (1, 2):
        draw_scene("red").save(root / "test2015" / f"COCO_test2015_{image_id:012d}.jpg")
    (root / QUESTIONS_FILE).write_text(json.dumps({"data_subtype": "test-dev2015", "questions": questions}))
    if full:
        rest = [{"image_id": 3, "question": "Not in test-dev?", "question_id": 3000}]
        (root / FULL_TEST_FILE).write_text(json.dumps({"questions": questions[:2] + rest}))


@pytest.mark.parametrize("full", [True, False])
def test_vqav2_testdev_writes_the_evalai_submission(tmp_path, full):
    write_testdev(tmp_path, full)
    bench = get_benchmark("vqav2_testdev")
    with pytest.warns(UserWarning, match="skipped 1 malformed questions"):
        questions = bench.load(tmp_path)
    assert [q.qid for q in questions] == ["1000", "2000"] and questions[0].target is None
    assert questions[0].prompt == "How many dogs?" + SHORT_ANSWER_SUFFIX
    records = [{"id": q.qid, **bench.score(q, a)} for q, a in zip(questions, ["Two.", "A dog"], strict=True)]
    assert not {"correct", "score"} & set(records[0])  # nothing to score without answers
    metrics = bench.aggregate(records)
    assert metrics["scored"] is False and "EvalAI" in metrics["note"] and metrics["submission"] == "submission.json"
    bench.write_extra_outputs(tmp_path, tmp_path, records)
    submission = json.loads((tmp_path / "submission.json").read_text())
    expected = [{"question_id": 1000, "answer": "2"}, {"question_id": 2000, "answer": "dog"}]
    assert submission == (expected + [{"question_id": 3000, "answer": ""}] if full else expected)


def test_vqav2_testdev_refuses_question_files_from_different_releases():
    with pytest.raises(ValueError, match=r"not in v2_OpenEnded_mscoco_test2015_questions\.json"):
        submission_entries([{"id": "5", "parsed": "yes"}], full_ids=[1, 2])
