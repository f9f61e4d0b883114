"""Power planning: hand-computed detectable effects, replicates for a target, and a pilot's effects.csv."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from llava_gemma.analysis.planning.power import detectable_effect, pilot_spread, power_markdown, replicates_needed
from llava_gemma.errors import UserError
from scipy import stats


def test_detectable_effect_by_hand():
    # 16 runs, 5 run-level terms: 11 df; SE = 2 * 0.05 / 4 = 0.025.
    t = stats.t.ppf(0.975, 11) + stats.t.ppf(0.8, 11)
    assert detectable_effect(0.05, 16, 5) == pytest.approx(t * 0.025)
    assert math.isnan(detectable_effect(0.05, 4, 4))  # no df left


def test_replicates_needed_is_the_fewest_that_reach_the_target():
    need = replicates_needed(0.05, 0.05, 8, 4)
    assert detectable_effect(0.05, 8 * need, 4) <= 0.05 < detectable_effect(0.05, 8 * (need - 1), 4)
    assert replicates_needed(1e-4, 0.05, 8, 4) is None


def test_pilot_effects_give_the_spread(tmp_path):
    path = tmp_path / "effects.csv"
    pd.DataFrame({"benchmark": ["gqa", "gqa", "gqa"], "factor": ["language_model", "vision_tower", "a:b"],
                  "std_error": [0.02, 0.02, 0.5], "n_runs": [16, 16, 16]}).to_csv(path, index=False)
    assert pilot_spread(path) == {"gqa": pytest.approx(0.02 * 4 / 2)}  # the interaction row is left out
    assert "| gqa | 0.0400 |" in power_markdown(pilot_spread(path), 8, 2, 4, 0.05, "pilot")
    with pytest.raises(UserError, match="--pilot"):
        pilot_spread(tmp_path / "missing.csv")
