"""POPE and GQA benchmarks: official parsing/metric rules on hand-computed cases, and loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llava_gemma.eval.benchmarks import BENCHMARKS, get_benchmark
from llava_gemma.eval.benchmarks.base import SHORT_ANSWER_SUFFIX, Question
from llava_gemma.eval.benchmarks.gqa import GQABenchmark, normalize_prediction
from llava_gemma.eval.benchmarks.pope import SPLITS, PopeBenchmark, parse_yes_no

# --------------------------------------------------------------------------- registry


def test_registry_names_and_unknown_name():
    assert isinstance(get_benchmark("pope"), PopeBenchmark)
    assert isinstance(get_benchmark("gqa"), GQABenchmark)
    assert {"pope", "gqa"} <= set(BENCHMARKS)
    with pytest.raises(ValueError, match=r"Unknown benchmark 'nonexistent'.*gqa.*pope"):
        get_benchmark("nonexistent")


# --------------------------------------------------------------------------- POPE scoring


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("yes", "yes"),
        ("Yes.", "yes"),  # first sentence "Yes"
        ("No", "no"),
        ("no.", "no"),
        ("No, there is not.", "no"),  # commas removed: "No there is not"
        ("There is no dog.", "no"),  # "no" is a word of the first sentence
        ("yes, there is a cat. No wait", "yes"),  # only the first sentence counts
        ("not sure", "no"),
        # eval_pope.py matches the exact words "No", "not", "no": a capitalised "Not" is not
        # among them, so "Not sure" counts as yes under the official rule.
        ("Not sure", "yes"),
        ("Nope", "yes"),  # not an exact word match either
        ("nothing", "yes"),
        ("", "none"),  # the one departure: an empty (failed) answer is unanswered, not "yes" as in eval_pope.py
        ("No\n", "yes"),  # no stripping in eval_pope.py: the only word is "No\n" (generate.py strips before)
        (" No", "no"),  # split(" ") gives ["", "No"]
    ],
)
def test_pope_parse_follows_llava_eval_pope(prediction, expected):
    assert parse_yes_no(prediction) == expected


def _pope_question(split: str, i: int, label: str) -> Question:
    return Question(
        f"{split}-{i}", None, "Is there a dog in the image?" + SHORT_ANSWER_SUFFIX, label, {"split": split}
    )


def test_pope_score_record():
    bench = PopeBenchmark()
    rec = bench.score(_pope_question("random", 1, "no"), "No, there is not.")
    assert rec == {"correct": True, "parsed": "no", "split": "random", "label": "no"}
    rec = bench.score(_pope_question("adversarial", 2, "no"), "Yes.")
    assert rec == {"correct": False, "parsed": "yes", "split": "adversarial", "label": "no"}


def test_pope_aggregate_hand_computed():
    bench = PopeBenchmark()
    # random: predictions vs labels -> TP=2 (0,1), FP=2 (2,3), TN=1 (5), FN=1 (4)
    random_cases = [
        ("Yes", "yes"),
        ("Yes.", "yes"),
        ("yes", "no"),
        ("Yes, there is.", "no"),
        ("No.", "yes"),
        ("There is no cat.", "no"),
    ]
    # popular: TP=0, FP=0, TN=1, FN=1 -> nothing predicted "yes"
    popular_cases = [("No", "yes"), ("no", "no")]
    records = [
        bench.score(_pope_question("random", i, gold), pred) for i, (pred, gold) in enumerate(random_cases)
    ]
    records += [
        bench.score(_pope_question("popular", i, gold), pred) for i, (pred, gold) in enumerate(popular_cases)
    ]
    m = bench.aggregate(records)

    # random: acc=(2+1)/6=0.5, precision=2/(2+2)=0.5, recall=2/(2+1)=2/3,
    # f1=2*(1/2)*(2/3)/(1/2+2/3)=(2/3)/(7/6)=4/7, yes_ratio=4/6=2/3
    assert m["random/accuracy"] == pytest.approx(0.5)
    assert m["random/precision"] == pytest.approx(0.5)
    assert m["random/recall"] == pytest.approx(2 / 3)
    assert m["random/f1"] == pytest.approx(4 / 7)
    assert m["random/yes_ratio"] == pytest.approx(2 / 3)
    # popular: acc=1/2; precision=0/0 -> 0.0 (no yes predicted); recall=0/1=0; f1=0; yes_ratio=0
    assert m["popular/accuracy"] == pytest.approx(0.5)
    assert m["popular/precision"] == 0.0
    assert m["popular/recall"] == 0.0
    assert m["popular/f1"] == 0.0
    assert m["popular/yes_ratio"] == 0.0
    # pooled: TP=2, FP=2, TN=2, FN=2 -> acc=4/8, precision=2/4, recall=2/4, f1=0.5, yes_ratio=4/8
    for key in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
        assert m[f"pooled/{key}"] == pytest.approx(0.5), key
    # split mean (LLaVA-1.5's headline): the plain mean of the two evaluated splits
    assert m["split_mean/accuracy"] == pytest.approx(0.5)
    assert m["split_mean/f1"] == pytest.approx((4 / 7 + 0.0) / 2)
    assert m["split_mean/yes_ratio"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert not any(k.startswith("adversarial/") for k in m)  # only splits that were evaluated
    assert "f1" not in m and "accuracy" not in m  # no unqualified headline: the name says which
    assert all(0.0 <= v <= 1.0 for v in m.values())
    for key in ("split_mean/accuracy", "split_mean/f1", "pooled/accuracy", "pooled/f1"):
        assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"], key


def test_pope_aggregate_no_positive_labels_and_empty():
    bench = PopeBenchmark()
    recs = [bench.score(_pope_question("random", 0, "no"), "Yes")]
    m = bench.aggregate(recs)  # TP=0, FP=1, FN=0 -> precision 0/1, recall 0/0 -> 0.0
    assert (m["pooled/precision"], m["pooled/recall"], m["pooled/f1"], m["pooled/yes_ratio"]) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="no records"):
        bench.aggregate([])


# --------------------------------------------------------------------------- POPE loading


def _write_pope(root: Path, n: int = 6, extra_lines: dict[str, list[str]] | None = None) -> None:
    (root / "val2014").mkdir(parents=True)
    for split in SPLITS:
        lines = []
        for i in range(1, n + 1):
            image = f"COCO_val2014_{i:012d}.jpg"
            (root / "val2014" / image).touch()
            row = {
                "question_id": i,
                "image": image,
                "text": f"Is there a {split} thing {i} in the image?",
                "label": "yes" if i % 2 else "no",
            }
            lines.append(json.dumps(row))
        lines += (extra_lines or {}).get(split, [])
        (root / f"coco_pope_{split}.json").write_text("\n".join(lines) + "\n")


def test_pope_load_all_splits(tmp_path):
    _write_pope(tmp_path, n=4)
    qs = PopeBenchmark().load(tmp_path)
    assert len(qs) == 12
    assert [q.qid for q in qs[:4]] == ["random-1", "random-2", "random-3", "random-4"]
    assert {q.meta["split"] for q in qs} == set(SPLITS)
    q = qs[0]
    assert (
        q.prompt
        == "Is there a random thing 1 in the image?\nAnswer the question using a single word or phrase."
    )
    assert q.target == "yes" and qs[1].target == "no"
    assert q.image_path == tmp_path / "val2014" / "COCO_val2014_000000000001.jpg"
    assert len({q.qid for q in qs}) == len(qs)


def test_pope_limit_is_per_split_seeded_and_deterministic(tmp_path):
    _write_pope(tmp_path, n=10)
    bench = PopeBenchmark()
    a = bench.load(tmp_path, limit=3, seed=1)
    assert [q.qid for q in a] == [q.qid for q in bench.load(tmp_path, limit=3, seed=1)]
    for split in SPLITS:
        ids = [int(q.qid.split("-")[1]) for q in a if q.meta["split"] == split]
        assert len(ids) == 3 and ids == sorted(ids)  # original order kept
    subsets = {tuple(q.qid for q in bench.load(tmp_path, limit=3, seed=s)) for s in range(5)}
    assert len(subsets) > 1  # the seed matters


@pytest.mark.parametrize("limit", [2, 4, 10, 15])
def test_pope_limit_keeps_yes_and_no_balanced(tmp_path, limit):
    _write_pope(tmp_path, n=40)  # 20 yes and 20 no per split
    for seed in range(3):
        questions = PopeBenchmark().load(tmp_path, limit=limit, seed=seed)
        for split in SPLITS:
            labels = [q.target for q in questions if q.meta["split"] == split]
            assert len(labels) == limit and abs(labels.count("yes") - labels.count("no")) <= 1


def test_pope_malformed_lines_are_skipped_with_count(tmp_path):
    bad = [
        '{"question_id": 99, "image": "x.jpg", "text": "Is',
        '{"question_id": 98, "image": "x.jpg"}',
        json.dumps({"question_id": 97, "image": "x.jpg", "text": "Is there?", "label": "maybe"}),
        json.dumps({"question_id": 1, "image": "x.jpg", "text": "Duplicate id?", "label": "no"}),
        "",
        "[1, 2]",
    ]
    _write_pope(tmp_path, n=3, extra_lines={"popular": bad})
    with pytest.warns(UserWarning, match=r"skipped 5 malformed lines out of 8 in .*coco_pope_popular\.json"):
        qs = PopeBenchmark().load(tmp_path)
    assert len(qs) == 9


def test_pope_missing_files_raise_clear_errors(tmp_path):
    _write_pope(tmp_path, n=2)
    (tmp_path / "coco_pope_popular.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"coco_pope_popular\.json is missing; run the download rule"):
        PopeBenchmark().load(tmp_path)

    other = tmp_path / "other"
    _write_pope(other, n=2)
    (other / "val2014" / "COCO_val2014_000000000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"3 of 6 image files are missing"):
        PopeBenchmark().load(other)
    with pytest.raises(FileNotFoundError, match="val2014"):
        PopeBenchmark().load(tmp_path / "nowhere")


# --------------------------------------------------------------------------- GQA scoring


@pytest.mark.parametrize(
    ("prediction", "gold", "correct"),
    [
        ("Red.", "red", True),  # rstrip('.') then lower()
        ("red", "red", True),
        ("Yes.", "yes", True),
        (" yes", "yes", False),  # convert_gqa_for_eval.py strips nothing (LLaVA's loop already did)
        ("yes.\n", "yes", False),  # rstrip('.') stops at the newline
        ("red...", "red", True),  # rstrip removes every trailing dot
        ("the dog", "dog", False),  # exact match: no article removal in GQA's eval.py
        ("dogs", "dog", False),
        ("Left side", "left", False),
    ],
)
def test_gqa_score_exact_match(prediction, gold, correct):
    q = Question("201307251", None, "Which side?" + SHORT_ANSWER_SUFFIX, gold, {"structural": "query"})
    rec = GQABenchmark().score(q, prediction)
    assert rec == {"correct": correct, "parsed": normalize_prediction(prediction), "structural": "query"}


def test_gqa_aggregate_binary_open_split():
    bench = GQABenchmark()
    cases = [  # (structural, correct)
        ("query", True),
        ("query", False),
        ("query", False),  # open: 1/3
        ("verify", True),
        ("logical", True),
        ("choose", True),
        ("compare", False),  # binary: 3/4
    ]
    records = [{"correct": c, "parsed": "x", "structural": s} for s, c in cases]
    m = bench.aggregate(records)
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["open/accuracy"] == pytest.approx(1 / 3)
    assert m["binary/accuracy"] == pytest.approx(3 / 4)
    assert m["structural/query/accuracy"] == pytest.approx(1 / 3)
    assert m["structural/verify/accuracy"] == 1.0
    assert m["structural/compare/accuracy"] == 0.0
    # an empty group is 0.0, as eval.py's avg() returns for an empty list
    only_open = bench.aggregate([{"correct": True, "parsed": "x", "structural": "query"}])
    assert only_open["binary/accuracy"] == 0.0 and only_open["open/accuracy"] == 1.0


# --------------------------------------------------------------------------- GQA loading


def _gqa_entry(image_id: str, question: str, answer: str, structural: str, balanced: bool = True) -> dict:
    return {
        "imageId": image_id,
        "question": question,
        "answer": answer,
        "isBalanced": balanced,
        "types": {"structural": structural, "semantic": "attr", "detailed": "color"},
        "fullAnswer": "",
        "semantic": [],
        "entailed": [],
        "equivalent": [],
    }


def _write_gqa(root: Path, data: dict) -> None:
    (root / "images").mkdir(parents=True)
    for entry in data.values():
        if isinstance(entry, dict) and "imageId" in entry:
            (root / "images" / f"{entry['imageId']}.jpg").touch()
    (root / "testdev_balanced_questions.json").write_text(json.dumps(data))


def test_gqa_load_balanced_only_and_skip_malformed(tmp_path):
    data = {
        "20968379": _gqa_entry("n288870", "What color is the car?", "red", "query"),
        "20968380": _gqa_entry("n288870", "Is the car red?", "yes", "verify"),
        "20968381": _gqa_entry("n161313", "Is it a dog or a cat?", "dog", "choose"),
        "20968382": _gqa_entry("n161313", "Unbalanced?", "no", "verify", balanced=False),
        "20968383": {"imageId": "n1", "question": "No types?", "answer": "no", "isBalanced": True},
    }
    _write_gqa(tmp_path, data)
    with pytest.warns(UserWarning, match=r"skipped 1 malformed questions out of 5"):
        qs = GQABenchmark().load(tmp_path)
    assert [q.qid for q in qs] == ["20968379", "20968380", "20968381"]
    q = qs[0]
    assert q.prompt == "What color is the car?\nAnswer the question using a single word or phrase."
    assert q.target == "red"
    assert q.image_path == tmp_path / "images" / "n288870.jpg"
    assert q.meta["structural"] == "query"
    bench = GQABenchmark()
    assert bench.aggregate([bench.score(q, q.target.capitalize() + ".") for q in qs])["accuracy"] == 1.0


def test_gqa_limit_deterministic(tmp_path):
    data = {str(i): _gqa_entry(f"n{i}", f"Question {i}?", "yes", "verify") for i in range(20)}
    _write_gqa(tmp_path, data)
    bench = GQABenchmark()
    a = [q.qid for q in bench.load(tmp_path, limit=5, seed=3)]
    assert a == [q.qid for q in bench.load(tmp_path, limit=5, seed=3)]
    assert len(a) == 5 and a == sorted(a, key=int)
    assert len(bench.load(tmp_path, limit=100)) == 20


def test_gqa_missing_or_broken_files(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"testdev_balanced_questions\.json is missing; run the download"
    ):
        GQABenchmark().load(tmp_path)
    _write_gqa(tmp_path, {"1": _gqa_entry("n1", "Q?", "yes", "verify")})
    (tmp_path / "testdev_balanced_questions.json").write_text('{"1": {"imageId": "n1", "quest')
    with pytest.raises(ValueError, match="not valid JSON"):
        GQABenchmark().load(tmp_path)
    (tmp_path / "testdev_balanced_questions.json").write_text(
        json.dumps(
            {"1": _gqa_entry("n1", "Q?", "yes", "verify"), "2": _gqa_entry("n2", "Q?", "no", "verify")}
        )
    )
    with pytest.raises(FileNotFoundError, match=r"1 of 2 image files are missing \(first: .*n2\.jpg\)"):
        GQABenchmark().load(tmp_path)
