"""tools/bench_toy_guard.py builds the cell it measures: the guard's own by default, one change per option."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import bench_toy_guard  # noqa: E402
from test_workflow import GUARD_STAGE2_EPOCHS, seeing_cell_config  # noqa: E402


def options(**changed) -> argparse.Namespace:
    defaults = dict(config=None, benchmarks=["pope", "scienceqa_img"], scale="guard",
                    attribute_questions=None, choice_questions=None, free_colours=None, epochs=None,
                    lm_rate=None, stage1_epochs=None, stage1_rate=None, lm=None, lm_level="2b", tower="clip",
                    connector="skip")
    return argparse.Namespace(**(defaults | changed))


def test_by_default_the_tool_measures_the_guards_own_cell_at_its_epochs():
    config, cell = bench_toy_guard.cell_config(1, options())
    assert cell == "results/cells/2b_clip_skip"
    assert config == seeing_cell_config(1)
    assert config["train"]["stage2"]["epochs"] == GUARD_STAGE2_EPOCHS


def test_options_pick_another_cell_of_the_study_and_fractional_epochs():
    config, cell = bench_toy_guard.cell_config(
        0, options(lm_level="7b", tower="dinov2", connector="pretrain", epochs=2.5))
    assert cell == "results/cells/7b_dinov2_pretrain"
    assert config["train"]["stage2"]["epochs"] == 2.5
    assert config["grid"][1]["levels"] == {"dinov2": {"vision_tower": {"local": "models/toy-dinov2"}}}
    assert bench_toy_guard.cell_config(0, options(epochs=2.0))[0]["train"]["stage2"]["epochs"] == 2  # stays an int


def test_a_named_study_keeps_its_own_stage2_epochs():
    before = bench_toy_guard.cell_config(0, options(config=ROOT / "examples" / "toy-before-letters.yaml"))[0]
    assert before["train"]["stage2"]["epochs"] == 1
    assert bench_toy_guard.cell_config(0, options(config=ROOT / "toy.yaml"))[0]["train"]["stage2"]["epochs"] == 2.5
