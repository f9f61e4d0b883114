"""Factor effects: a linear probability model of per-question correctness on the design factors.

For each benchmark, every (run, question) outcome y (1/0 for correct, or a score in [0, 1]) is
regressed by OLS on an intercept and one indicator per non-baseline level of each factor
(connector: skip instead of pretrain; tower: e.g. DINOv2 instead of CLIP; LM: e.g. 7B instead
of 2B). A run is one trained model: a cell, or one replicate of a cell. The baseline level is the
first one the config lists. On a full, balanced design each coefficient is the factor's average
effect on the probability of a correct answer, averaged over the other factors' levels.

Standard errors are clustered two ways, by the benchmark's unit of dependence (the image where
questions share one: GQA, POPE, VQAv2, MME, MM-Vet; the pair for MMVP; the question for
ScienceQA-IMG; ``clustered_by`` names it) and by run, since every run answers the same questions
and a run's seed moves all its answers at once; clustered.py states the estimator, its small-sample
corrections and its degrees of freedom (``df``, ``df_rule``). ``run_sd`` is the run variance
component as an SD (clustered.run_variance); ``p_holm`` adjusts ``p_value`` across benchmarks per
term (multiplicity.py); two-factor interactions get rows where the design estimates them
(interactions.py). With one run per cell the
run part is estimated from what the main effects leave unexplained between cells (interactions
and seed noise together), and the interval is never narrower than the question-only one.

With fewer cells the model keeps what the cells identify: a factor with one level in the cells is
left out, and a term whose indicator the earlier terms already determine (two factors that only
change together) is left out as confounded; a term the design aliases with interactions (a
fractional design) is fitted, and ``note`` names what its estimate also carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llava_gemma.analysis.statistics.terms import Term
from llava_gemma.study.config import Cell

if TYPE_CHECKING:
    from llava_gemma.study.design import Design

# Factor -> how a reader names it; in the paper's order of discussion.
FACTORS: dict[str, str] = {"connector": "connector", "vision_tower": "vision tower", "language_model": "language model"}
LEVEL = 0.95
EFFECT_COLUMNS = ["benchmark", "term", "factor", "level", "baseline", "estimate", "std_error", "ci_low", "ci_high",
                  "p_value", "p_holm", "outcome", "n_cells", "n_questions", "n_clusters", "note", "n_runs",
                  "clustered_by", "df", "df_rule", "run_sd", "scale"]
TWO_WAY = ("question", "run")


def label_of(factor: str, labels: dict[str, str] | None = None) -> str:
    return (labels or {}).get(factor) or FACTORS.get(factor) or factor.replace("_", " ")


def design_terms(cells: pd.DataFrame, factors: dict[str, tuple[str, ...]],
                 labels: dict[str, str] | None = None) -> tuple[list[Term], dict[str, str]]:
    """The candidate terms (one per non-baseline level present), and the factors left out with the reason."""
    terms, left_out = [], {}
    for factor, levels in factors.items():
        present = set(cells[factor].astype(str))
        used = [lv for lv in levels if lv in present]
        if len(used) <= 1:
            left_out[factor] = f"only {used[0]!r} in the grid: its effect is not identified" if used else \
                "no level in the grid: its effect is not identified"
            continue
        terms += [Term(factor, level, used[0], label_of(factor, labels)) for level in used[1:]]
    return terms, left_out


def _indicators(frame: pd.DataFrame, terms: list[Term]) -> np.ndarray:
    return np.column_stack([np.ones(len(frame))] +
                           [(frame[t.factor].astype(str) == t.level).to_numpy(float) for t in terms])


def identified_terms(cells: pd.DataFrame, terms: list[Term]) -> tuple[list[Term], dict[Term, str]]:
    """Keep each term that adds a dimension to the cells' design matrix; the rest are confounded."""
    kept: list[Term] = []
    confounded: dict[Term, str] = {}
    for term in terms:
        trial = kept + [term]
        if np.linalg.matrix_rank(_indicators(cells, trial)) == len(trial) + 1:
            kept.append(term)
        else:
            others = ", ".join(t.label for t in kept) or "the intercept"
            confounded[term] = f"confounded with {others} in these cells: not identified"
    return kept, confounded


def alias_note(factor: str, design: Design | None) -> str:
    """What a fractional or explicit design says this main effect's estimate also carries."""
    from llava_gemma.study.design import alias_matrix

    chain = (design.alias_chains or {}).get(factor) if design is not None else None
    if chain:  # the alias matrix's row: every term the estimate carries, with its sign and weight
        clear = "" if not alias_matrix.carries_two_factor({factor: chain}) else \
            "main effects not estimable clear of two-factor interactions: "
        return f"{clear}estimates {alias_matrix.chain_text(factor, chain)} (alias matrix; factorial effects)"
    if design is None or not (aliases := [a for a in design.aliased(factor) if a != "I"]):
        return ""
    res = f" (resolution {_roman(design.resolution)})" if design.resolution else ""
    return f"aliased with {', '.join(aliases)}{res}"


def _roman(n: int) -> str:
    from llava_gemma.study.design.markdown import roman

    return roman(n)


def _outcome_kind(outcomes: pd.DataFrame) -> str:
    if "kind" in outcomes:
        return "score" if (outcomes["kind"] == "score").any() else "correct"
    return "correct" if outcomes["y"].isin([0, 1]).all() else "score"


def fit_effects(outcomes: pd.DataFrame, factors: dict[str, tuple[str, ...]], benchmark: str,
                design: Design | None = None, *, factor_labels: dict[str, str] | None = None,
                clusters: tuple[str, ...] = TWO_WAY) -> pd.DataFrame:
    """One row per candidate term of ``benchmark``: the estimate with its clustered interval, or why it is out.

    ``outcomes`` has columns ``run`` (one trained model), one column per factor (its level name),
    ``question`` and ``y``; optionally ``cluster`` (the question's unit of dependence, e.g. its image,
    when it is not the question itself) and ``kind`` ("correct" or "score"). ``clusters`` is
    ("question", "run") for the two-way standard errors, or ("question",) for question sampling only
    (what the report showed before replicates; it ignores seed noise). Factors are reported in the
    order of ``factors``, levels in the order they list (the first present level is the baseline).
    """
    from llava_gemma.analysis.statistics import clustered
    from llava_gemma.analysis.statistics.interactions import interaction_rows
    from llava_gemma.analysis.statistics.intervals import ols_intervals
    from llava_gemma.analysis.statistics.lack_of_fit import lack_of_fit_rows

    factors = {f: tuple(str(x) for x in lv) for f, lv in factors.items()}
    cells = outcomes[list(factors)].astype(str).drop_duplicates().reset_index(drop=True)
    terms, left_factors = design_terms(cells, factors, factor_labels)
    kept, confounded = identified_terms(cells, terms)
    cluster_col = "cluster" if "cluster" in outcomes else "question"
    unit = _cluster_name(outcomes)
    common = {"benchmark": benchmark, "n_cells": len(cells), "n_runs": outcomes["run"].nunique(),
              "n_questions": outcomes["question"].nunique(), "n_clusters": outcomes[cluster_col].nunique(),
              "outcome": _outcome_kind(outcomes)}
    rows = []
    if kept:
        x, y = _indicators(outcomes, kept), outcomes["y"].to_numpy(float)
        questions = pd.factorize(outcomes[cluster_col])[0]
        runs = pd.factorize(outcomes["run"])[0]
        run_sd = np.sqrt(clustered.run_variance(x, y, questions, runs))
        if tuple(clusters) not in (TWO_WAY, ("question",)):
            raise ValueError(f"clusters={clusters!r}; use ('question', 'run') or ('question',).")
        fit = ols_intervals(x, y, questions, runs, two_way=tuple(clusters) == TWO_WAY, level=LEVEL)
        beta, se, df, p = fit.beta, fit.se, fit.df, fit.p
        clustered_by = unit if tuple(clusters) != TWO_WAY else f"{unit} and run" if fit.run_df > 0 else \
            f"{unit} only: as many runs as run-level terms leaves no between-run variance to estimate"
        for i, term in enumerate(kept, start=1):
            rows.append({**common, "term": term.label, "factor": term.factor, "level": term.level,
                         "baseline": term.baseline, "estimate": beta[i], "std_error": se[i],
                         "ci_low": fit.low[i], "ci_high": fit.high[i],
                         "p_value": p[i], "note": alias_note(term.factor, design), "clustered_by": clustered_by,
                         "df": df[i], "df_rule": fit.df_rule, "run_sd": run_sd})
        if tuple(clusters) == TWO_WAY:
            rows += interaction_rows(outcomes, kept, x, questions, runs, cells, design,
                                     {**common, "clustered_by": clustered_by, "run_sd": run_sd})
            rows += lack_of_fit_rows(outcomes, x, list(factors), {**common, "run_sd": run_sd})
    for term, why in confounded.items():
        rows.append({**common, "term": term.label, "factor": term.factor, "level": term.level,
                     "baseline": term.baseline, "note": why})
    for factor, why in left_factors.items():
        rows.append({**common, "term": f"{label_of(factor, factor_labels)} (one level)", "factor": factor,
                     "note": why})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _cluster_name(outcomes: pd.DataFrame) -> str:
    """What the first clustering dimension is: 'image', 'pair', 'question', or a mix when records differ."""
    if "cluster_field" not in outcomes:
        return "cluster" if "cluster" in outcomes else "question"
    fields = list(dict.fromkeys(outcomes["cluster_field"].astype(str)))
    return fields[0] if len(fields) == 1 else " or ".join(fields) + " (records differ: re-evaluate)"


def build_effects(cells: list[Cell], benchmarks: list[str], cells_dir: Path) -> pd.DataFrame:
    """The three-factor grid's effects, one run per cell (the caller the Snakefile uses today)."""
    from llava_gemma.analysis.statistics.outcomes import load_outcomes

    factors = {f: tuple(dict.fromkeys(getattr(c, f) for c in cells)) for f in FACTORS}
    frames = []
    for b in benchmarks:
        outcomes = load_outcomes(cells, b, cells_dir)
        frames.append(fit_effects(outcomes.assign(run=outcomes["cell"]), factors, b))
    return with_holm(frames)


def with_holm(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The benchmarks' tables as one, with Holm-adjusted p-values across benchmarks per term."""
    from llava_gemma.analysis.statistics.multiplicity import add_holm

    if not frames:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    return add_holm(pd.concat(frames, ignore_index=True))


def write_effects(effects: pd.DataFrame, out_dir: Path) -> None:
    from llava_gemma.analysis.figures.plots import plot_effects

    out_dir.mkdir(parents=True, exist_ok=True)
    effects.to_csv(out_dir / "effects.csv", index=False, float_format="%.5f")
    plot_effects(effects, out_dir / "effects.png")
