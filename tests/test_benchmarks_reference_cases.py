"""One case per rule of each benchmark's reference scorer, worked out by reading the reference.

References (the scripts the paper's numbers come from):
- ScienceQA-IMG: haotian-liu/LLaVA llava/eval/eval_science_qa.py
- POPE: haotian-liu/LLaVA llava/eval/eval_pope.py (split mean: LLaVA issues #626, #806)
- MME: the MME release's eval_tool/calculation.py (after LLaVA's convert_answer_to_mme.py)
- GQA: LLaVA scripts/convert_gqa_for_eval.py, then GQA's eval.py (exact match)
- VQAv2: LLaVA llava/eval/m4c_evaluator.py EvalAIAnswerProcessor, then GT-Vision-Lab/VQA vqaEval.py
- MMVP: lmms-eval tasks/mmvp/utils.py (letter extraction, pair accuracy)
- MM-Vet: yuweihao/MM-Vet mm-vet_evaluator.py (grader prompt, score parse)
Every prediction is given as LLaVA's generation loop hands it to the scorer (already stripped
there); the parsers themselves strip nothing the references do not.
"""

from __future__ import annotations

import pytest
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.benchmarks.base import Question
from llava_gemma.eval.benchmarks.gqa import normalize_prediction
from llava_gemma.eval.benchmarks.mme import MMEBenchmark
from llava_gemma.eval.benchmarks.mme import parse_yes_no as mme_parse
from llava_gemma.eval.benchmarks.mmvp import gold_letter
from llava_gemma.eval.benchmarks.mmvp import parse_letter as mmvp_letter
from llava_gemma.eval.benchmarks.pope import PopeBenchmark
from llava_gemma.eval.benchmarks.pope import parse_yes_no as pope_parse
from llava_gemma.eval.benchmarks.scienceqa_img import ScienceQAImgBenchmark
from llava_gemma.eval.benchmarks.scienceqa_img import parse_letter as sqa_letter
from llava_gemma.eval.benchmarks.vqav2 import normalize_answer, vqa_accuracy
from llava_gemma.eval.judge import build_prompt, parse_score

# ------------------------------------------------------------------------------- ScienceQA-IMG


@pytest.mark.parametrize(("prediction", "parsed"), [
    # rule 1: the whole text is an option letter
    ("C", "C"), ("c", "FAILED"), ("C ", "FAILED"), ("", "FAILED"),
    # rule 2: "X. " opens the text (3 characters at least)
    ("D. dog", "D"), ("D. ", "D"), ("D.", "FAILED"), ("D.dog", "FAILED"), ("F. dog", "FAILED"),
    ("A. The answer is B.", "A"),  # rule 2 comes before rule 3
    # rule 3: re.findall(r"The answer is ([A-Z]).") with exactly one match
    ("The answer is A.", "A"), ("Because of the heat. The answer is C.", "C"),
    ("The answer is Ab", "A"),  # the '.' is any character
    ("The answer is A", "FAILED"),  # nothing after the letter
    ("The answer is A\n", "FAILED"),  # '.' does not match a newline
    ("The answer is A. The answer is B.", "FAILED"), ("The answer is A. The answer is A.", "FAILED"),  # two matches
    ("the answer is A.", "FAILED"), ("The answer is (A).", "FAILED"), ("The answer is a.", "FAILED"),
    ("The answer is F.", "F"),  # any capital: read, then wrong for every question (below)
    # no newline handling at all
    ("B\n", "FAILED"), ("B.\ncat", "FAILED"), ("B. cat\nThe answer is A.", "B"),
])
def test_scienceqa_parse_per_rule(prediction, parsed):
    assert sqa_letter(prediction) == parsed


def test_scienceqa_letter_must_name_one_of_the_choices():
    bench = ScienceQAImgBenchmark()
    four = Question("1", None, "?", "D", {"n_choices": 4, "subject": "s"})
    assert bench.score(four, "D")["correct"] and bench.score(four, "The answer is D.")["correct"]
    three = Question("2", None, "?", "C", {"n_choices": 3, "subject": "s"})
    assert not bench.score(three, "D")["correct"]  # get_pred_idx: D is not among 3 choices
    assert not bench.score(three, "The answer is F.")["correct"]


def test_generation_caps_are_the_reference_scripts():
    # model_vqa_loader.py's default 128; model_vqa_science.py and model_vqa.py (MM-Vet) 1024
    caps = {"pope": 128, "mme": 128, "gqa": 128, "vqav2": 128, "vqav2_testdev": 128, "mmvp": 128,
            "scienceqa_img": 1024, "mmvet": 1024}
    assert {name: get_benchmark(name).max_new_tokens for name in caps} == caps


# ---------------------------------------------------------------------------------------- POPE


@pytest.mark.parametrize(("prediction", "parsed"), [
    ("Yes", "yes"), ("Yes, there is a dog.", "yes"), ("Yes, there is no dog.", "no"),  # "no" is a word
    ("No.", "no"), ("no", "no"), ("It is not.", "no"), ("I see no.", "no"),
    ("NO", "yes"), ("Not at all", "yes"), ("Nope", "yes"), ("None", "yes"),  # exact words "No", "not", "no" only
    ("There is a dog. No.", "yes"),  # only the text before the first '.'
    ("2.5 dogs, no", "yes"),  # ... even a decimal point ends it: "2"
    ("No,there", "yes"),  # commas deleted, not replaced: "Nothere"
    ("No\nthere is none", "yes"), ("no\tway", "yes"),  # split on single spaces only
    ("a dog", "yes"),  # no negative word: yes
    ("", "none"), ("  ", "none"),  # the one departure: empty (a failed question) is unanswered, not yes
])
def test_pope_parse_per_rule(prediction, parsed):
    assert pope_parse(prediction) == parsed


def test_pope_split_mean_is_the_mean_of_per_split_values():
    bench = PopeBenchmark()

    def rec(split: str, label: str, answer: str) -> dict:
        return bench.score(Question(f"{split}-{label}-{answer}", None, "?", label, {"split": split}), answer)

    # random: TP 1, FN 1 -> precision 1, recall 1/2, F1 2/3, acc 1/2
    # popular: TP 1, FP 1 -> precision 1/2, recall 1, F1 2/3, acc 1/2
    # adversarial: TP 1, TN 1 -> F1 1, acc 1
    records = [rec("random", "yes", "Yes"), rec("random", "yes", "No"),
               rec("popular", "yes", "Yes"), rec("popular", "no", "Yes, there is"),
               rec("adversarial", "yes", "Yes"), rec("adversarial", "no", "No, there is not.")]
    m = bench.aggregate(records)
    assert m["split_mean/f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["split_mean/accuracy"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    # pooled: TP 3, FP 1, TN 1, FN 1 -> F1 6/8, acc 4/6: not the same number
    assert m["pooled/f1"] == pytest.approx(0.75) and m["pooled/accuracy"] == pytest.approx(4 / 6)
    assert m["random/recall"] == 0.5 and m["popular/precision"] == 0.5 and m["adversarial/yes_ratio"] == 0.5
    for key in ("split_mean/f1", "split_mean/accuracy", "pooled/f1", "pooled/accuracy"):
        assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"]


# ----------------------------------------------------------------------------------------- MME


@pytest.mark.parametrize(("prediction", "parsed"), [
    ("Yes", "yes"), ("yes.", "yes"), ("Yes, there is", "yes"), ("YES", "yes"),
    ("No, there is not", "no"), ("nO", "no"), ("Nope", "no"),
    ("know", "no"), ("ano", "no"), ("noyes", "no"),  # "no" in the first 4 characters, "yes" not
    ("yesno", "yes"),  # "yes" is looked for first
    (" no", "no"), ("   yes", "other"),  # no stripping: only the first 4 characters count
    ("y", "other"), ("n", "other"), ("", "other"),  # lmms-eval reads y/n; calculation.py does not
    ("The answer is yes", "other"), ("There is no dog", "other"),
])
def test_mme_parse_per_rule(prediction, parsed):
    assert mme_parse(prediction) == parsed


def test_mme_other_counts_wrong_for_acc_and_acc_plus():
    bench = MMEBenchmark()

    def rec(i: int, j: int, target: str, answer: str) -> dict:
        meta = {"category": "color", "image": f"color/{i}.jpg"}
        return bench.score(Question(f"color/{i}#{j}", None, "?", target, meta), answer)

    m = bench.aggregate([rec(0, 0, "yes", "Yes"), rec(0, 1, "no", "There is no red"),  # other: wrong
                         rec(1, 0, "yes", "yes"), rec(1, 1, "no", "No")])
    assert (m["color/acc"], m["color/acc_plus"], m["color/score"]) == (75.0, 50.0, 125.0)


# ----------------------------------------------------------------------------------------- GQA


@pytest.mark.parametrize(("prediction", "gold", "correct"), [
    ("Yes.", "yes", True), ("yes...", "yes", True), ("YES", "yes", True),  # rstrip('.'), lower()
    ("Yes .", "yes", False),  # the space before the period stays
    (" yes", "yes", False),  # no stripping
    ("the dog", "dog", False), ("yes, it is", "yes", False), ("two", "2", False),  # exact match only
    ("", "no", False),
])
def test_gqa_exact_match_per_rule(prediction, gold, correct):
    assert (normalize_prediction(prediction) == gold) is correct
    q = Question("1", None, "?", gold, {"structural": "verify"})
    assert get_benchmark("gqa").score(q, prediction)["correct"] is correct


# --------------------------------------------------------------------------------------- VQAv2


@pytest.mark.parametrize(("raw", "processed"), [
    ("Two", "2"), ("none", "0"), ("Ten", "10"), ("eleven", "eleven"),  # number words zero..ten only
    ("The Dog.", "dog"), ("an apple", "apple"), ("a", ""),  # articles dropped
    ("dont", "don't"), ("don't", "don't"), ("Im", "im"),  # the table's "Im" is never reached: lower-cased first
    ("yes, there is", "yes there is"), ("1,000", "1000"),  # commas deleted
    ("3.5", "3.5"), ("3.", "3"), ("e.g.", "eg"),  # a period not before a digit goes
    ("." * 40, "." * 8),  # ... at most 32 of them (re.UNICODE passed as re.sub's count)
    ("hot-dog", "hot dog"), ("hot - dog", "hot dog"),  # punctuation: space unless it touches one
    ("man's", "man 's"), ("What?", "what"), ("Yes!", "yes"), ("x\ny", "x y"),
    ("", ""),
])
def test_vqa_answer_processing_per_rule(raw, processed):
    assert normalize_answer(raw) == processed


def test_vqa_accuracy_counts_matches_over_leave_one_out_subsets():
    others = ["cat"] * 10
    for k, expected in ((0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)):
        assert vqa_accuracy("dog", ["dog"] * k + others[k:]) == pytest.approx(expected), k
    assert vqa_accuracy("Two dogs.", ["2 dogs"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("", ["yes"] * 10) == 0.0
    # the 10 answers disagree: each goes through punctuation/digit/article processing too
    assert vqa_accuracy("dog", ["the dog"] * 2 + ["dog!"] + ["cat"] * 7) == pytest.approx(0.9)


# ---------------------------------------------------------------------------------------- MMVP


@pytest.mark.parametrize(("prediction", "letter"), [
    ("A", "A"), ("a", "A"), ("(B).", "B"), ("  A  ", "A"),  # a lone letter, stripped
    ("b) Closed", "B"), ("A. Open", "A"),  # a letter opening the answer
    ("The answer is (a)", "A"), ("option b", "B"),
    ("I think a dog is there", "A"),  # any standalone a/b: the article counts
    ("AB", "B"),  # the standalone rule finds the B at the end
    ("Both", "B"), ("Absolutely", "A"),  # else the first character, if it is a or b
    ("Closed", ""), ("C", ""), ("", ""),
])
def test_mmvp_letter_per_rule(prediction, letter):
    assert mmvp_letter(prediction) == letter


@pytest.mark.parametrize(("cell", "letter"), [("(a)", "A"), ("(b)", "B"), ("a", "A"), (" (a) Open", "A"),
                                              ("(A)", "A"), ("c", None)])
def test_mmvp_gold_letter_as_lmms_eval_reads_it(cell, letter):
    assert gold_letter(cell) == letter


def test_mmvp_pair_accuracy_needs_both_and_a_complete_pair():
    bench = get_benchmark("mmvp")

    def rec(i: int, target: str, answer: str) -> dict:
        return bench.score(Question(str(i), None, "?", target, {"pair": (i - 1) // 2, "options": ["x", "y"]}), answer)

    m = bench.aggregate([rec(1, "A", "A"), rec(2, "B", "(b)"), rec(3, "A", "B"), rec(4, "B", "B"),
                         rec(5, "A", "A")])  # pair 2 lost its second question: out of pair accuracy
    assert m["pair_accuracy"] == 0.5 and m["pairs"] == 2 and m["question_accuracy"] == pytest.approx(4 / 5)


# -------------------------------------------------------------------------------------- MM-Vet


@pytest.mark.parametrize(("reply", "score"), [
    ("0.5", 0.5), ("1.0", 1.0), ("0", 0.0), ("0.7\n", 0.7), ("0.5 because", 0.5),
    (" 0.5", None),  # the text before the first space is empty
    ("1.5", None), ("-0.1", None), ("0.5,", None), ("", None), (None, None),
])
def test_mmvet_judge_reply_parse(reply, score):
    assert parse_score(reply) == score


def test_mmvet_grader_row_spaces_out_and_or():
    prompt = build_prompt("What is x?", "-1<AND>-5<OR>none", "x = -1")
    assert prompt.endswith("\nWhat is x? | -1 <AND> -5 <OR> none | x = -1 | ")
