"""The effect model's intervals on simulated studies with known effects, and the pieces they rest on.

- A direct CR2 (Bell-McCaffrey) reference, written from the definition, checks ``cr2_cov`` and the
  two-way combination (question + run - intersection) on unbalanced data.
- Monte Carlo: studies simulated with image clusters and an effect that varies by image, an
  LM x tower interaction, unbalanced runs and independent answers (analysis/simulated.py) are fitted
  by the report's own interval code. Each scenario must cover its planted effects at a rate inside
  an accepted band [0.93, 0.975] widened by the Monte Carlo error (3 binomial standard errors of the
  number of intervals; up to 1 where the df rule is known to be conservative, 1-2 run-level df),
  and its mean squared standard error must match the estimates' mean squared error within
  [0.8, 1.3] widened by 3 of its own Monte Carlo standard errors. Both sides are checked:
  too narrow and too wide intervals fail.
- Planted bugs (CR0 instead of CR2, the intersection not subtracted, df = G - 1 runs instead of
  Bell-McCaffrey's) are put in by monkeypatching clustered.py, and the same checks must then fail.
  The upper coverage bound has little power at these sizes (the df rule is conservative with few
  run-level df); the variance ratio is the two-sided check that catches too wide standard errors.
- The toy study's collapse (a 95% interval of +-512 on a 0-1 scale for an effect of 0.006 with a
  standard error of 0.007) is rebuilt from toy-like outcomes and must not come back.

Few simulations and small studies, fixed seeds: the whole file runs in seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from llava_gemma.analysis.statistics import clustered
from llava_gemma.analysis.statistics.effects import build_effects, fit_effects
from llava_gemma.analysis.statistics.multiplicity import holm
from llava_gemma.analysis.statistics.simulated import Scenario, coverage, report_fit, simulate_outcomes
from llava_gemma.study.config import Cell
from llava_gemma.study.design import select_cells
from scipy import stats

F3 = {"language_model": ["2b", "7b"], "vision_tower": ["clip", "dinov2"], "connector": ["pretrain", "skip"]}
F2 = {"language_model": ["2b", "7b"], "vision_tower": ["clip", "dinov2"]}
E3 = {"language_model": 0.10, "vision_tower": -0.06, "connector": 0.04}
E2 = {"language_model": 0.10, "vision_tower": -0.06}
FULL3, FULL2 = select_cells(F3, "full"), select_cells(F2, "full")

SCENARIOS = {
    # GQA-like: 20 questions per image, the tower's effect varies between images (SD 0.1).
    "image clusters": Scenario(FULL3, E3, replicates=2, n_questions=200, questions_per_image=20,
                               effect_sd_by_image={"vision_tower": 0.1}, run_sd=0.01, question_spread=0.1),
    # One run per cell; LM x tower interaction of 0.06 the main-effects model does not fit.
    "interaction": Scenario(FULL3, E3, replicates=1, n_questions=100, run_sd=0.05, question_spread=0.15,
                            interactions={("language_model", "vision_tower"): 0.06}),
    # Unbalanced runs, seed noise dominant: 5 runs, 3 run-level terms.
    "unbalanced runs": Scenario(FULL2, E2, replicates=(1, 1, 1, 2), n_questions=200, run_sd=0.07,
                                question_spread=0.05, base=0.47),
    # Fewest runs: one per cell of a 2^2, one run-level residual degree of freedom.
    "one run per cell": Scenario(FULL2, E2, replicates=1, n_questions=400, run_sd=0.08, question_spread=0.05,
                                 base=0.47),
    # Independent answers and no seed effect: the intersection holds all the noise.
    "independent answers": Scenario(FULL2, E2, replicates=(2, 2, 2, 3), n_questions=100, run_sd=0.0,
                                    question_spread=0.0),
}
N_SIMS = {"image clusters": 150, "interaction": 150, "unbalanced runs": 300, "one run per cell": 600,
          "independent answers": 150}
COVERAGE_BAND = (0.93, 0.975)
# Bell-McCaffrey's df is conservative with one or two run-level residual df (here 1 and 1.38): the
# question part it ignores lightens the tails. Coverage there is ~1.00; accepted, and said in the docs.
CONSERVATIVE = {"unbalanced runs", "one run per cell"}
RATIO_BAND = (0.8, 1.3)


@dataclass(frozen=True)
class Verdict:
    coverage: float
    coverage_bounds: tuple[float, float]
    ratio: float
    ratio_bounds: tuple[float, float]

    @property
    def ok(self) -> bool:
        return (self.coverage_bounds[0] <= self.coverage <= self.coverage_bounds[1]
                and self.ratio_bounds[0] <= self.ratio <= self.ratio_bounds[1])


def judge(name: str, seed: int = 0) -> Verdict:
    """Coverage and variance calibration of one scenario, with bounds widened by their MC error."""
    c = coverage(SCENARIOS[name], N_SIMS[name], seed)
    n = c["intervals"]
    mc = 3 * np.sqrt(0.95 * 0.05 / n)
    # The ratio's MC error: each squared error of an estimate is ~ sigma^2 chi^2_1 (relative SD sqrt 2).
    ratio_mc = 3 * c["variance_ratio"] * np.sqrt(2 / n)
    high = 1.0 if name in CONSERVATIVE else COVERAGE_BAND[1] + mc
    return Verdict(c["coverage"], (COVERAGE_BAND[0] - mc, high), c["variance_ratio"],
                   (RATIO_BAND[0] - ratio_mc, RATIO_BAND[1] + ratio_mc))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_intervals_cover_at_the_nominal_rate(name):
    v = judge(name)
    low, high = v.coverage_bounds
    assert low <= v.coverage <= high, f"{name}: coverage {v.coverage:.3f} outside [{low:.3f}, {high:.3f}]"
    low, high = v.ratio_bounds
    assert low <= v.ratio <= high, f"{name}: variance ratio {v.ratio:.2f} outside [{low:.2f}, {high:.2f}]"


def test_question_clusters_undercover_when_images_carry_the_effect():
    """The reason for image clusters: the same studies clustered by question cover well below 0.95."""
    s = SCENARIOS["image clusters"]
    by_image = coverage(s, N_SIMS["image clusters"], 1)
    by_question = coverage(s, N_SIMS["image clusters"], 1, fit=report_fit(by_image=False))
    assert by_question["variance_ratio"] < 0.75 < 0.9 < by_image["variance_ratio"]
    assert by_question["coverage"] < by_image["coverage"] - 0.02


# --- planted bugs -------------------------------------------------------------------------------

def cr0_cov(x, resid, groups, bread):
    """CR0: the plain cluster sandwich, no leverage correction."""
    scores = np.zeros((int(groups.max()) + 1, x.shape[1]))
    np.add.at(scores, groups, x * resid[:, None])
    return bread @ scores.T @ scores @ bread


def no_intersection(original):
    def two_way(x, resid, questions, runs):
        fit = original(x, resid, questions, runs)
        bread = np.linalg.inv(x.T @ x)
        summed = clustered.cr2_cov(x, resid, questions, bread) + clustered.cr2_cov(x, resid, runs, bread)
        return clustered.TwoWay(summed, fit.cov_question, fit.cov_run_excess, fit.df, fit.run_df)
    return two_way


def runs_minus_one(x, groups, bread):
    return np.full(x.shape[1], len(np.unique(groups)) - 1.0)


@pytest.mark.parametrize("bug, scenario", [("cr0", "unbalanced runs"), ("no intersection", "independent answers"),
                                           ("df = G - 1", "one run per cell")])
def test_each_planted_bug_fails_the_checks(monkeypatch, bug, scenario):
    if bug == "cr0":
        monkeypatch.setattr(clustered, "cr2_cov", cr0_cov)
    elif bug == "no intersection":
        monkeypatch.setattr(clustered, "two_way_cov", no_intersection(clustered.two_way_cov))
    else:
        monkeypatch.setattr(clustered, "bell_mccaffrey_df", runs_minus_one)
    assert not judge(scenario).ok, f"planting {bug} left {scenario} inside its bounds: the check cannot see it"


# --- reference CR2 ------------------------------------------------------------------------------

def reference_cr2(x: np.ndarray, resid: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Bell and McCaffrey (2002), cluster by cluster: A_g = (I - H_gg)^(-1/2), meat += X_g' A_g e e' A_g X_g."""
    bread = np.linalg.inv(x.T @ x)
    meat = np.zeros((x.shape[1], x.shape[1]))
    for g in np.unique(groups):
        xg, eg = x[groups == g], resid[groups == g]
        vals, vecs = np.linalg.eigh(np.eye(len(eg)) - xg @ bread @ xg.T)
        adjust = vecs @ np.diag([1 / np.sqrt(v) if v > 1e-10 else 1.0 for v in vals]) @ vecs.T
        score = xg.T @ adjust @ eg
        meat += np.outer(score, score)
    return bread @ meat @ bread


def _unbalanced_data(seed: int = 3):
    rng = np.random.default_rng(seed)
    runs = np.repeat(np.arange(7), [30, 25, 30, 28, 30, 20, 30])
    levels = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [1, 1], [0, 0], [1, 0]])[runs]
    questions = np.concatenate([rng.permutation(30)[:n] for n in np.bincount(runs)]) // 3  # images of 3
    x = np.column_stack([np.ones(len(runs)), levels])
    y = (rng.random(len(runs)) < 0.4 + 0.2 * levels[:, 0] + 0.05 * rng.normal(size=7)[runs]).astype(float)
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    return x, resid, questions, runs


def test_cr2_matches_the_reference():
    x, resid, questions, runs = _unbalanced_data()
    bread = np.linalg.inv(x.T @ x)
    for groups in (questions, runs, questions * 10 + runs):
        np.testing.assert_allclose(clustered.cr2_cov(x, resid, groups, bread), reference_cr2(x, resid, groups),
                                   rtol=1e-9, atol=1e-14)


def reference_bm_df(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Bell-McCaffrey df from its definition: the eigenvalues of G'G, with the n x G matrix G built whole."""
    bread = np.linalg.inv(x.T @ x)
    resid_maker = np.eye(len(x)) - x @ bread @ x.T
    out = []
    for j in range(x.shape[1]):
        columns = []
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            vals, vecs = np.linalg.eigh(resid_maker[np.ix_(idx, idx)])
            adjust = vecs @ np.diag([1 / np.sqrt(v) if v > 1e-10 else 1.0 for v in vals]) @ vecs.T
            columns.append(resid_maker[:, idx] @ adjust @ x[idx] @ bread[:, j])
        lam = np.linalg.eigvalsh(np.column_stack(columns).T @ np.column_stack(columns))
        out.append(lam.sum() ** 2 / (lam**2).sum())
    return np.array(out)


def test_bell_mccaffrey_df_matches_the_definition():
    x, _, questions, runs = _unbalanced_data()
    bread = np.linalg.inv(x.T @ x)
    for groups in (runs, questions):
        np.testing.assert_allclose(clustered.bell_mccaffrey_df(x, groups, bread), reference_bm_df(x, groups),
                                   rtol=1e-9)
    balanced = np.column_stack([np.ones(80), np.repeat([0, 1, 0, 1, 0, 1, 0, 1], 10),
                                np.repeat([0, 0, 1, 1, 0, 0, 1, 1], 10), np.repeat([0, 0, 0, 0, 1, 1, 1, 1], 10)])
    df = clustered.bell_mccaffrey_df(balanced, np.repeat(np.arange(8), 10), np.linalg.inv(balanced.T @ balanced))
    np.testing.assert_allclose(df[1:], 4.0)  # one run per cell of a 2^3: the run-level residual df


def test_two_way_is_question_plus_run_minus_intersection():
    x, resid, questions, runs = _unbalanced_data()
    fit = clustered.two_way_cov(x, resid, questions, runs)
    run_part = reference_cr2(x, resid, runs) - reference_cr2(x, resid, questions * 10 + runs)
    vals, vecs = np.linalg.eigh(run_part)
    expected = reference_cr2(x, resid, questions) + (vecs * np.clip(vals, 0, None)) @ vecs.T
    np.testing.assert_allclose(fit.cov, expected, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(fit.df, reference_bm_df(x, runs), rtol=1e-9)
    assert fit.run_df == 7 - 3


# --- the toy study's collapse -------------------------------------------------------------------

def toy_like_outcomes(seed: int, nq: int = 300, p_right: float = 0.95) -> pd.DataFrame:
    """Eight cells, one run each, answers that barely depend on the cell: 60% of the questions are
    right in every cell with probability ``p_right``, the rest wrong, as in the toy quick start
    where most toy questions are answered alike by every cell. Three questions per image (toy VQAv2)."""
    rng = np.random.default_rng(seed)
    easy = rng.random(nq) < 0.6
    frames = []
    for c in F3["connector"]:
        for t in F3["vision_tower"]:
            for lm in F3["language_model"]:
                y = (rng.random(nq) < np.where(easy, p_right, 1 - p_right)).astype(float)
                frames.append(pd.DataFrame({"run": f"{lm}_{t}_{c}", "connector": c, "vision_tower": t,
                                            "language_model": lm, "question": np.arange(nq).astype(str),
                                            "cluster": (np.arange(nq) // 3).astype(str), "y": y}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("seed, p_right, by_image", [(57, 0.95, False), (6, 0.95, False), (57, 0.97, True)])
def test_no_collapsed_interval_on_toy_like_outcomes(seed, p_right, by_image):
    """Seeds 57 and 6 gave +-399 and +-78 (questions as clusters; +-1.5e5 for 57 at 0.97) with the
    Satterthwaite df, which fell to ~1e-5. Bell-McCaffrey's df of one run per cell of a 2^3 is 4."""
    outcomes = toy_like_outcomes(seed, p_right=p_right)
    if not by_image:
        outcomes = outcomes.drop(columns="cluster")
    fit = fit_effects(outcomes, {f: tuple(v) for f, v in F3.items()}, "vqav2")
    half = (fit["ci_high"] - fit["ci_low"]) / 2
    assert (half < 0.1).all(), half.tolist()
    assert (half <= stats.t.ppf(0.975, 4) * fit["std_error"] + 1e-12).all(), half.tolist()
    np.testing.assert_allclose(fit["df"], 4.0)
    assert fit["df_rule"].eq(clustered.DF_RULE).all()


# --- image clusters from the records; Holm --------------------------------------------------------

def test_records_with_images_cluster_by_image(tmp_path):
    cells = [Cell(lm, t, c) for lm in F3["language_model"] for t in F3["vision_tower"] for c in F3["connector"]]
    rng = np.random.default_rng(0)
    for cell in cells:
        path = tmp_path / cell.name / "eval" / "gqa" / "samples.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps({"id": str(q), "correct": bool(rng.random() < 0.5), "image": f"im{q // 5}"})
                                + "\n" for q in range(60)))
    effects = build_effects(cells, ["gqa"], tmp_path)
    assert effects["clustered_by"].eq("image and run").all()
    assert effects["n_clusters"].eq(12).all() and effects["n_questions"].eq(60).all()
    assert effects["p_holm"].notna().all() and (effects["run_sd"] >= 0).all()


def test_holm_by_hand():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.005])
    np.testing.assert_allclose(holm(p), [0.03, 0.06, np.nan, 0.06, 0.02])


# --- interactions ---------------------------------------------------------------------------------

def test_interaction_fitted_on_a_replicated_full_factorial():
    s = Scenario(FULL3, E3, replicates=3, n_questions=300, run_sd=0.01, question_spread=0.1,
                 interactions={("language_model", "vision_tower"): 0.12})
    outcomes = simulate_outcomes(s, np.random.default_rng(0))
    fit = fit_effects(outcomes, FULL3.factors, "sim", FULL3).set_index("factor")
    lm_tower = fit.loc["language_model:vision_tower"]
    assert lm_tower["ci_low"] <= 0.12 <= lm_tower["ci_high"] and lm_tower["p_value"] < 0.01
    assert lm_tower["df"] == pytest.approx(24 - 7)  # 24 runs, 7 run-level terms
    assert fit.loc["vision_tower:connector", "ci_low"] <= 0.0 <= fit.loc["vision_tower:connector", "ci_high"]
    # Main effects stay the average effects (the centred interaction columns are orthogonal to them).
    assert fit.loc["language_model", "ci_low"] <= 0.10 + 0.06 <= fit.loc["language_model", "ci_high"]


def test_aliased_interactions_are_named_not_fitted():
    four = dict(F3, connector_arch=["linear", "mlp2x_gelu"])
    half = select_cells(four, {"fractional": {"generators": ["D = ABC"]}})
    s = Scenario(half, dict(E3, connector_arch=0.0), replicates=2, n_questions=100)
    fit = fit_effects(simulate_outcomes(s, np.random.default_rng(0)), half.factors, "sim", half)
    pairs = fit[fit["factor"].str.contains(":")]
    assert len(pairs) == 6 and pairs["estimate"].isna().all()
    assert pairs["note"].str.startswith("not estimable apart from").all()
