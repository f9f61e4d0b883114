"""tools/probe_lm_ceiling.py asks MMVP's and ScienceQA-IMG's questions about fresh scenes, with the caption
where the image will stand: a toy LM's ceiling for its cells on those benchmarks (issue 27)."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

from llava_gemma.eval.benchmarks import mmvp
from llava_gemma.toy import formats
from llava_gemma.toy import scenes as sc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from probe_lm_ceiling import (
    colour_questions,
    mmvp_kind,
    mmvp_questions,
    scienceqa_questions,
    score_mmvp,
    score_scienceqa,
)


def _option(prompt: str, letter: str) -> str:
    return re.search(rf"^{letter}\. (.+)$", prompt, flags=re.M).group(1)


def test_mmvp_questions_come_in_pairs_whose_scenes_answer_different_options():
    items = mmvp_questions(random.Random(0), 60)
    assert len(items) == 120 and [it["pair"] for it in items[:4]] == [0, 0, 1, 1]
    for first, second in zip(items[::2], items[1::2]):
        assert first["prompt"] == second["prompt"] and first["target"] != second["target"]
        assert first["prompt"].endswith(formats.LETTER_ANSWER)
        assert first["scene"] != second["scene"]
        if first["kind"] in ("colour", "size", "shape"):  # the right option is said by the scene's caption
            for it in (first, second):
                assert _option(it["prompt"], it["target"]).lower() in sc.caption(it["scene"]), it["prompt"]
    assert {it["kind"] for it in items} >= {"colour", "size", "position", "shape"}


def test_mmvp_kind_names_the_attribute_a_pair_differs_in():
    assert mmvp_kind("What color is the star?") == "colour"
    assert mmvp_kind("Is the star large or small?") == "size"
    assert mmvp_kind("Is the star on the left or on the right side of the image?") == "position"
    assert mmvp_kind("Is the red object a star or a heart?") == "shape"
    assert mmvp_kind("Which word is written in the image?") == "word"


def test_scores_read_answers_with_each_benchmarks_own_letter_rule():
    items = mmvp_questions(random.Random(1), 2)
    right = [it["target"] for it in items]
    assert score_mmvp(items, right)["pair_accuracy"] == 1.0
    one_letter = ["A"] * 4  # the same letter for both scenes of a pair never scores the pair
    scored = score_mmvp(items, one_letter)
    assert scored["pair_accuracy"] == 0.0 and scored["question_accuracy"] == 0.5
    assert mmvp.parse_letter("(B).") == "B"
    sqa = scienceqa_questions(random.Random(2), 50)
    assert score_scienceqa(sqa, [it["target"] for it in sqa])["accuracy"] == 1.0
    assert score_scienceqa(sqa, ["no letter"] * 50)["accuracy"] == 0.0
    assert 0.25 < score_scienceqa(sqa, ["A"] * 50)["chance"] < 0.5


def test_size_or_side_asks_two_options_about_size_or_side():
    rng, asked = random.Random(4), 0
    for _ in range(300):
        scene = sc.random_scene(rng)
        question, letter = formats.format_example("size_or_side", scene, rng)
        options = dict(re.findall(r"^([AB])\. (.+)$", question, flags=re.M))
        assert len(options) == 2 and question.endswith(formats.LETTER_ANSWER)
        shape = re.match(r"Is the (\w+) (large or small|on the left or on the right)\?", question)
        if shape is None:  # no shape of the scene is unique: another two-option question stands in
            continue
        asked += 1
        obj = next(o for o in scene.objects if o.shape == shape.group(1))
        truth = obj.size if shape.group(2) == "large or small" else ("left" if obj.cell % 3 == 0 else "right")
        assert options[letter].lower() == truth, (question, letter, obj)
    assert asked > 250


def test_colour_questions_put_the_wrong_option_in_the_caption_or_leave_it_out():
    for present in (True, False):
        for it in colour_questions(random.Random(5), 100, present):
            caption = sc.caption(it["scene"])
            right = _option(it["prompt"], it["target"]).lower()
            wrong = _option(it["prompt"], "B" if it["target"] == "A" else "A").lower()
            assert right in caption and right != wrong
            assert (wrong in caption) == present, (caption, it["prompt"])
