"""MME, MM-Vet, VQAv2, MMVP and ScienceQA-IMG: official scoring rules on hand-computed cases,
loading of the toy world's real-format files, and the bootstrap intervals."""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
from llava_gemma.eval.benchmarks import BENCHMARKS, get_benchmark
from llava_gemma.eval.benchmarks.base import LETTER_SUFFIX, SHORT_ANSWER_SUFFIX, Question
from llava_gemma.eval.benchmarks.mme import COGNITION, PERCEPTION, MMEBenchmark, make_prompt, parse_yes_no
from llava_gemma.eval.benchmarks.mmvp import MMVPBenchmark, parse_letter, parse_options
from llava_gemma.eval.benchmarks.scienceqa_img import ScienceQAImgBenchmark
from llava_gemma.eval.benchmarks.scienceqa_img import parse_letter as sqa_letter
from llava_gemma.eval.benchmarks.vqav2 import VQAv2Benchmark, normalize_answer, vqa_accuracy
from llava_gemma.eval.bootstrap import bootstrap_interval, mean_interval, ratio
from llava_gemma.toy.benchmarks_extra import ExtraBenchmarkSpec, generate_extra_benchmarks

NAMES = ("mme", "mmvet", "vqav2", "mmvp", "scienceqa_img")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("raw")
    counts = generate_extra_benchmarks(root, random.Random(0))
    return root / "benchmarks", counts


def test_registry_has_all_seven_and_the_vqav2_submission():
    assert set(BENCHMARKS) == {"pope", "gqa", *NAMES, "vqav2_testdev"}
    for name in NAMES:
        assert get_benchmark(name).name == name


# ------------------------------------------------------------------------------------------ MME


@pytest.mark.parametrize(("prediction", "parsed"), [
    ("yes", "yes"), ("Yes", "yes"), ("Yes.", "yes"),  # lower-cased, then "yes" in the first 4 characters
    ("No", "no"), ("No, there is not.", "no"), (" YES", "yes"),
    ("  YES", "other"),  # no stripping in calculation.py: the first 4 characters are "  ye"
    ("not sure", "no"),  # "not " contains "no"
    ("Nope", "no"),
    ("There is no dog.", "other"),  # "ther": neither, although the sentence says no
    ("I don't know", "other"), ("", "other"),
    ("no yes", "no"),  # "no y" has no "yes"
])
def test_mme_parse_follows_calculation_py(prediction, parsed):
    assert parse_yes_no(prediction) == parsed


def test_mme_prompt_replaces_the_yes_no_instruction():
    assert make_prompt("Is there a cat? Please answer yes or no.") == "Is there a cat?" + SHORT_ANSWER_SUFFIX


def _mme_records(spec: dict[str, list[list[bool]]]) -> list[dict]:
    bench, recs = MMEBenchmark(), []
    for task, images in spec.items():
        for i, marks in enumerate(images):
            for j, right in enumerate(marks):
                target = ("yes", "no")[j % 2]
                q = Question(f"{task}/{i}#{j}", None, "?", target, {"category": task, "image": f"{task}/{i}.png"})
                recs.append(bench.score(q, target.capitalize() + "." if right else "I cannot tell"))
    return recs


def test_mme_acc_plus_and_sums_hand_computed():
    m = MMEBenchmark().aggregate(_mme_records({
        "existence": [[True, True], [True, False]],  # acc 3/4 = 75, acc+ 1/2 = 50 -> 125
        "count": [[False, False]],  # 0
        "OCR": [[True, False], [False, True]],  # acc 50, acc+ 0 -> 50
        "code_reasoning": [[True, True]],  # 200
        "text_translation": [[False, True]],  # acc 50, acc+ 0 -> 50
    }))
    assert (m["existence/acc"], m["existence/acc_plus"], m["existence/score"]) == (75.0, 50.0, 125.0)
    assert m["count/score"] == 0.0 and m["OCR/score"] == 50.0
    assert m["perception"] == pytest.approx(175.0)  # 125 + 0 + 50
    assert m["cognition"] == pytest.approx(250.0)  # 200 + 50
    assert m["total"] == pytest.approx(425.0)
    assert m["perception_ci_low"] <= m["perception"] <= m["perception_ci_high"]


def test_mme_perception_sums_ten_subtasks_cognition_four():
    perfect = {t: [[True, True]] for t in (*PERCEPTION, *COGNITION)}
    m = MMEBenchmark().aggregate(_mme_records(perfect))
    assert (m["perception"], m["cognition"]) == (2000.0, 800.0)
    half = {t: [[True, False]] for t in (*PERCEPTION, *COGNITION)}  # acc 50, acc+ 0 in every subtask
    m = MMEBenchmark().aggregate(_mme_records(half))
    assert (m["perception"], m["cognition"]) == (500.0, 200.0)
    assert len(PERCEPTION) == 10 and len(COGNITION) == 4


def test_mme_loads_toy_parquet_with_pairs_and_limit(toy):
    root, counts = toy
    bench = MMEBenchmark()
    qs = bench.load(root / "mme")
    assert len(qs) == counts["mme_questions"] == 14 * 8 * 2
    assert all(q.image_path.is_file() for q in qs)  # extracted from the parquet
    assert qs[0].prompt.endswith(SHORT_ANSWER_SUFFIX) and "Please answer" not in qs[0].prompt
    by_image: dict[str, list[str]] = {}
    for q in qs:
        by_image.setdefault(q.meta["image"], []).append(q.target)
    assert all(sorted(t) == ["no", "yes"] for t in by_image.values())
    sub = bench.load(root / "mme", limit=40, seed=1)
    assert sub == bench.load(root / "mme", limit=40, seed=1)
    assert {q.meta["category"] for q in sub} == {q.meta["category"] for q in qs}  # every subtask kept
    assert len(sub) % 2 == 0 and 28 <= len(sub) <= 56


def test_mme_missing_data_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MME: .* holds neither .*run the download rule"):
        MMEBenchmark().load(tmp_path)


# ---------------------------------------------------------------------------------------- VQAv2


@pytest.mark.parametrize(("raw", "normalized"), [
    ("two", "2"), ("Two", "2"), ("the dog", "dog"), ("a red ball", "red ball"),
    ("dont", "don't"), ("isnt", "isn't"), ("couldnt've", "couldn't've"),  # contractions restored
    ("Dog.", "dog"), ("yes!", "yes"), ("2.5", "2.5"), ("hot-dog", "hot dog"), ("1,000", "1000"),
    ("What?", "what"), ("man's hat", "man 's hat"), ("  Yes\n", "yes"),
])
def test_vqa_normalisation(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_vqa_accuracy_ten_choose_nine_hand_computed():
    # 3 x "2", 7 x "3": dropping a "2" leaves 2 matches (2/3), dropping a "3" leaves 3 (1) -> (3*2/3 + 7)/10
    assert vqa_accuracy("two", ["2"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("3", ["2"] * 3 + ["3"] * 7) == 1.0
    assert vqa_accuracy("4", ["2"] * 3 + ["3"] * 7) == 0.0
    # one match: 0 when it is left out, 1/3 in the 9 other subsets -> 0.3
    assert vqa_accuracy("the dog", ["dog"] + ["cat"] * 9) == pytest.approx(0.3)
    # two matches: 1/3 twice, 2/3 eight times -> 0.6
    assert vqa_accuracy("Dog.", ["dog"] * 2 + ["cat"] * 8) == pytest.approx(0.6)
    assert vqa_accuracy("Yes.", ["yes"] * 10) == 1.0
    # disagreeing human answers are normalised too ("the cat" counts as "cat"): as the first case
    assert vqa_accuracy("cat", ["the cat"] * 3 + ["dog"] * 7) == pytest.approx(0.9)
    # agreeing ones are taken as written (the official scorer trusts a unanimous answer as normalised)
    assert vqa_accuracy("the cat", ["the cat"] * 10) == 0.0


def test_vqav2_aggregate_percent_and_answer_types():
    bench = VQAv2Benchmark()
    def q(t: str, answers: list[str]) -> Question:
        return Question("1", None, "?", answers, {"answer_type": t, "question_type": "what"})
    recs = [bench.score(q("yes/no", ["yes"] * 10), "Yes"), bench.score(q("number", ["2"] * 3 + ["3"] * 7), "two"),
            bench.score(q("other", ["dog"] + ["cat"] * 9), "the dog"), bench.score(q("other", ["red"] * 10), "blue")]
    m = bench.aggregate(recs)
    assert m["accuracy"] == pytest.approx(100 * (1 + 0.9 + 0.3 + 0) / 4)
    assert m["yes/no/accuracy"] == 100.0 and m["number/accuracy"] == pytest.approx(90.0)
    assert m["other/accuracy"] == pytest.approx(15.0)
    assert 0.0 <= m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"] <= 100.0


def test_vqav2_loads_toy_files(toy):
    root, counts = toy
    qs = VQAv2Benchmark().load(root / "vqav2")
    assert len(qs) == counts["vqav2_questions"] and len({q.qid for q in qs}) == len(qs)
    assert all(len(q.target) == 10 and q.image_path.is_file() for q in qs)
    assert {q.meta["answer_type"] for q in qs} <= {"yes/no", "number", "other"}
    assert len(VQAv2Benchmark().load(root / "vqav2", limit=25)) == 25


def test_vqav2_falls_back_to_the_coco_images_pope_holds(toy, tmp_path):
    root, _ = toy
    vqav2, pope = tmp_path / "benchmarks" / "vqav2", tmp_path / "benchmarks" / "pope"
    for name in ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json"):
        vqav2.mkdir(parents=True, exist_ok=True)
        (vqav2 / name).write_bytes((root / "vqav2" / name).read_bytes())
    pope.mkdir(parents=True)
    (pope / "val2014").symlink_to(root / "vqav2" / "val2014")
    qs = VQAv2Benchmark().load(vqav2)
    assert qs and all(q.image_path.parent == pope / "val2014" and q.image_path.is_file() for q in qs)


# ----------------------------------------------------------------------------------------- MMVP


@pytest.mark.parametrize(("prediction", "letter"), [
    ("A", "A"), ("b", "B"), ("(B)", "B"), ("B.", "B"), ("A. Open", "A"), ("The answer is B", "B"),
    ("option a", "A"), ("Closed", ""), ("", ""),
])
def test_mmvp_letter_extraction(prediction, letter):
    assert parse_letter(prediction) == letter


def test_mmvp_pair_with_one_right():
    bench = MMVPBenchmark()
    def q(i: int, target: str) -> Question:
        return Question(str(i), None, "?", target, {"pair": (i - 1) // 2, "options": ["x", "y"]})
    recs = [bench.score(q(1, "A"), "A"), bench.score(q(2, "B"), "B"),  # pair 0: both right
            bench.score(q(3, "A"), "A"), bench.score(q(4, "B"), "A")]  # pair 1: one right
    m = bench.aggregate(recs)
    assert m["pair_accuracy"] == 0.5 and m["question_accuracy"] == 0.75 and m["pairs"] == 2
    assert m["pair_accuracy_ci_low"] <= 0.5 <= m["pair_accuracy_ci_high"]


def _mmvp_csv(root: Path, rows: list[list[str]]) -> None:
    (root / "MMVP Images").mkdir(parents=True)
    with (root / "Questions.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["Index", "Question", "Options", "Correct Answer"], *rows])
    for row in rows:
        (root / "MMVP Images" / f"{row[0]}.jpg").write_bytes(b"x")


def test_mmvp_ground_truth_corrections_only_on_the_known_rows(tmp_path):
    rows = [[str(i), f"Question {(i + 1) // 2}?", "(a) Yes (b) No", "(a)"] for i in range(1, 281)]
    rows[98][2] = rows[99][2] = "(a) Long tusks (b) Short tusks"  # released: 99 -> (a), 100 -> (a)
    rows[278][2] = rows[279][2] = "(a) Standing (b) Sitting"
    _mmvp_csv(tmp_path, rows)
    gold = {q.qid: q.target for q in MMVPBenchmark().load(tmp_path)}
    assert (gold["99"], gold["100"], gold["279"], gold["280"]) == ("B", "A", "B", "A")
    assert gold["98"] == gold["101"] == "A"
    q = next(q for q in MMVPBenchmark().load(tmp_path) if q.qid == "1")
    assert q.prompt == "Question 1?\nA. Yes\nB. No" + LETTER_SUFFIX


def test_mmvp_reads_images_from_the_space_free_folder(tmp_path):
    _mmvp_csv(tmp_path, [["1", "Open?", "(a) Open (b) Closed", "(a)"], ["2", "Open?", "(a) Open (b) Closed", "(b)"]])
    (tmp_path / "MMVP Images").rename(tmp_path / "images")  # the paper config's download path
    assert [q.image_path for q in MMVPBenchmark().load(tmp_path)] == [tmp_path / "images" / "1.jpg",
                                                                    tmp_path / "images" / "2.jpg"]


def test_mmvp_toy_pairs_differ_in_one_attribute(toy):
    root, counts = toy
    qs = MMVPBenchmark().load(root / "mmvp")
    assert len(qs) == counts["mmvp_questions"] == 150
    for a, b in zip(qs[::2], qs[1::2]):
        assert a.meta["pair"] == b.meta["pair"] and a.prompt == b.prompt
        assert a.target != b.target  # the same question, opposite answers
        assert a.image_path.read_bytes() != b.image_path.read_bytes()
    assert parse_options("(a) Open (b) Closed") == ["Open", "Closed"]
    sub = MMVPBenchmark().load(root / "mmvp", limit=10, seed=3)
    assert len(sub) == 10 and all(a.meta["pair"] == b.meta["pair"] for a, b in zip(sub[::2], sub[1::2]))


# ------------------------------------------------------------------------------------ ScienceQA


@pytest.mark.parametrize(("prediction", "letter"), [
    ("B", "B"), ("B. cat", "B"), ("The answer is B.", "B"),
    ("The answer is B", "FAILED"),  # the pattern needs a character after the letter
    (" C ", "FAILED"),  # no stripping in eval_science_qa.py
    ("B.", "FAILED"),  # LLaVA's rule wants "X. " (with a space) or a bare letter
    ("(B)", "FAILED"), ("b", "FAILED"), ("cat", "FAILED"),
    ("A\nbecause", "FAILED"),  # no newline handling: "A\n" is neither a bare letter nor "A. "
])
def test_scienceqa_letter_rules(prediction, letter):
    assert sqa_letter(prediction) == letter


def test_scienceqa_score_and_prompt():
    bench = ScienceQAImgBenchmark()
    q = Question("7", None, "?", "B", {"n_choices": 2, "subject": "natural science"})
    assert bench.score(q, "B. cat")["correct"] and bench.score(q, "The answer is B.")["correct"]
    assert not bench.score(q, "A")["correct"]
    q3 = Question("8", None, "?", "B", {"n_choices": 2, "subject": "natural science"})
    assert bench.score(q3, "C")["parsed"] == "C" and not bench.score(q3, "C")["correct"]  # beyond the choices
    m = bench.aggregate([bench.score(q, "B"), bench.score(q, "A"), bench.score(q, "The answer is B.")])
    assert m["accuracy"] == pytest.approx(2 / 3) and m["natural science/accuracy"] == pytest.approx(2 / 3)


def test_scienceqa_loads_only_test_image_problems(toy):
    root, counts = toy
    qs = ScienceQAImgBenchmark().load(root / "scienceqa_img")
    problems = json.loads((root / "scienceqa_img" / "problems.json").read_text())
    splits = json.loads((root / "scienceqa_img" / "pid_splits.json").read_text())
    assert any(problems[p]["image"] is None for p in splits["test"])  # text-only test problems exist...
    assert len(qs) == counts["scienceqa_img_questions"]  # ...and are left out
    assert all(problems[q.qid]["image"] and q.qid in splits["test"] and q.image_path.is_file() for q in qs)
    with_hint = next(q for q in qs if problems[q.qid]["hint"])
    assert with_hint.prompt.startswith("Context: ") and with_hint.prompt.endswith(LETTER_SUFFIX)
    assert "\nA. " in with_hint.prompt and "\nB. " in with_hint.prompt


# ----------------------------------------------------------------------------------- toy world


def test_toy_generation_is_deterministic_and_avoids_seen_scenes(tmp_path, toy):
    _, counts = toy
    spec = ExtraBenchmarkSpec(mme_images_per_subtask=1, mmvet_questions=5, vqav2_questions=6, mmvp_pairs=3,
                              scienceqa_image_questions=5, scienceqa_text_questions=3)
    seen: set = set()
    small = generate_extra_benchmarks(tmp_path / "a", random.Random(7), spec, seen)
    generate_extra_benchmarks(tmp_path / "b", random.Random(7), spec)
    assert small["mme_questions"] == 28 and small["mmvp_questions"] == 6
    assert len(seen) >= 14 + 5 + 2 + 6 + 5  # every written scene is recorded
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert 100 <= min(counts.values()) and max(counts.values()) <= 300


def test_toy_mmvet_uses_and_or_answers(toy):
    root, counts = toy
    data = json.loads((root / "mmvet" / "mm-vet.json").read_text())
    assert len(data) == counts["mmvet_questions"]
    assert any("<AND>" in v["answer"] for v in data.values()) and any("<OR>" in v["answer"] for v in data.values())
    caps = {c for v in data.values() for c in v["capability"]}
    assert caps == {"rec", "ocr", "know", "gen", "spat", "math"}
    qs = get_benchmark("mmvet").load(root / "mmvet", limit=10)
    assert len(qs) == 10 and all(q.image_path.is_file() and q.prompt == data[q.qid]["question"] for q in qs)


# ------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    values = np.random.default_rng(1).random(500) < 0.7
    a, b = mean_interval(values), mean_interval(values)
    assert a == b and a[0] < values.mean() < a[1]
    assert mean_interval(values, seed=1) != a
    assert a[1] - a[0] == pytest.approx(2 * 1.96 * np.sqrt(0.7 * 0.3 / 500), rel=0.2)  # binomial width
    assert mean_interval([1.0] * 20) == (1.0, 1.0)
    low, high = mean_interval(values, scale=100.0)
    assert (low, high) == pytest.approx((100 * a[0], 100 * a[1]))


def test_bootstrap_strata_keep_their_sizes():
    # Stratum "x" is all 1 and "y" all 0 with fixed sizes: every resample has the same mean.
    comps = np.array([[1.0, 1.0]] * 30 + [[0.0, 1.0]] * 10)
    strata = ["x"] * 30 + ["y"] * 10
    assert bootstrap_interval(comps, lambda s: ratio(s[:, 0], s[:, 1]), strata=strata) == (0.75, 0.75)
    low, high = bootstrap_interval(comps, lambda s: ratio(s[:, 0], s[:, 1]))
    assert low < 0.75 < high


def test_bootstrap_is_fast():
    start = time.perf_counter()
    mean_interval(np.random.default_rng(0).random(9000))  # POPE-sized: 9,000 questions, 1,000 resamples
    assert time.perf_counter() - start < 2.0


def test_every_benchmark_reports_intervals_for_headline_metrics():
    q = Question("1", None, "?", "yes", {"split": "random", "structural": "verify"})
    pope = get_benchmark("pope").aggregate([get_benchmark("pope").score(q, "yes")])
    gqa = get_benchmark("gqa").aggregate([get_benchmark("gqa").score(q, "yes")])
    pope_keys = ("split_mean/accuracy", "split_mean/f1", "pooled/accuracy", "pooled/f1")
    for metrics, keys in ((pope, pope_keys), (gqa, ("accuracy",))):
        for key in keys:
            assert metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"]
