"""tools/diag_toy_cell.py groups a cell's answers by kind of question (issue 27's diagnosis)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from diag_toy_cell import by_kind, question_kind, sample_score


def test_question_kind_skips_a_scienceqa_context_line():
    prompt = "Context: A side is a straight edge.\nHow many sides does the shape have?\nA. three\nB. four"
    assert question_kind(prompt) == "How many sides"
    assert question_kind("Is the star on the left or on the right side of the image?\nA. Left", 2) == "Is the"
    assert question_kind("Context: only a hint") == "Context: only a"  # a lone line is the question


def test_by_kind_counts_shares_and_commonest_answers():
    records = [{"prompt": "What color is the star?\nA. Red\nB. Blue", "prediction": "A", "correct": True},
               {"prompt": "What color is the heart?\nA. Red\nB. Pink", "prediction": "A", "correct": False},
               {"prompt": "What color is the cross?\nA. White\nB. Red", "prediction": "B", "correct": False},
               {"prompt": "Which word is written?\nA. SUN\nB. ZOO", "prediction": "B", "score": 1.0}]
    kinds = by_kind(records)
    assert list(kinds) == ["What color is", "Which word is"]  # most questions first
    n, right, answers = kinds["What color is"]
    assert (n, right, answers[0]) == (3, pytest.approx(1 / 3), ("A", 2))
    assert kinds["Which word is"][:2] == (1, 1.0)


def test_a_sample_without_a_score_is_an_error_that_names_its_keys():
    with pytest.raises(KeyError, match="prediction"):
        sample_score({"prompt": "q", "prediction": "A"})


def test_colour_prior_counts_typical_answers_and_atypical_objects():
    from diag_toy_cell import colour_prior

    records = [  # a star's typical colour is yellow, a circle's red
        {"prompt": "What color is the star?\nAnswer the question using a single word or phrase.",
         "prediction": "Yellow", "target": ["yellow"] * 10, "score": 1.0},
        {"prompt": "What color is the circle?", "prediction": "Red", "target": ["blue"] * 8 + ["red"] * 2,
         "score": 0.0},
        {"prompt": "What color is the circle?", "prediction": "Blue", "target": ["blue"] * 10, "score": 1.0},
        {"prompt": "What color is the star?", "prediction": "Yellow", "target": "Yellow", "correct": True},  # GQA
        {"prompt": "Is there a star?", "prediction": "Yes", "target": ["yes"] * 10, "score": 1.0}]
    assert colour_prior(records) == (4, 3, 2, 1)
