"""The report's figures: factor effects and speed (matplotlib, no display); loss curves: loss_plot.py."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # rule jobs and CI have no display
import matplotlib.pyplot as plt
import pandas as pd

FACTOR_COLOURS = {"connector": "tab:blue", "vision_tower": "tab:orange", "language_model": "tab:green"}
DPI = 130


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return math.ceil(n / cols), cols


def _panel_title(bench: str, first: pd.Series | None) -> str:
    """The benchmark with what the panel's fit saw, counted as it is: questions (and their clusters),
    runs and cells (runs are cells x replicates)."""
    if first is None:
        return bench
    unit = str(first.get("clustered_by", "question")).split(" and ")[0].split(" only")[0]
    clusters = "" if unit == "question" else f" in {int(first['n_clusters'])} {unit}s"
    runs = int(first["n_runs"]) if pd.notna(first.get("n_runs")) else int(first["n_cells"])
    return f"{bench}\n{int(first['n_questions'])} questions{clusters}\n{runs} runs of {int(first['n_cells'])} cells"


def _caption(effects: pd.DataFrame) -> str:
    rule = next((r for r in effects.get("df_rule", pd.Series(dtype=str)).dropna()), "")
    units = sorted({str(c).split(" and ")[0].split(" only")[0] for c in effects.get("clustered_by", []) if pd.notna(c)})
    by = "/".join(units) or "question"
    seeds = all(" and run" in str(c) for c in effects.get("clustered_by", pd.Series(dtype=str)).dropna())
    covers = "question sampling and seed variance" if seeds else \
        "question sampling, and seed variance only where the runs allow (effects.csv: clustered_by)"
    notes = effects.get("note", pd.Series(dtype=str)).astype(str)
    aliased = "\nMain effects are not estimable clear of two-factor interactions in this design: each estimate " \
        "carries the interactions its note in effects.csv lists (design.md: alias matrix)." \
        if notes.str.startswith("main effects not estimable clear").any() else ""
    return (f"Factor effects (linear probability model): 95% t intervals clustered by {by} and by run"
            f"{'; df: ' + rule if rule else ''}.\n* Holm-adjusted p < 0.05 across benchmarks within the factor; "
            f"intervals (unadjusted) cover {covers}.{aliased}")


def plot_effects(effects: pd.DataFrame, path: Path) -> None:
    """One panel per benchmark; per term a point with its 95% interval; terms left out named in grey."""
    if "scale" in effects:  # the official-scale rows (MME points, ...) are in effects.csv, not the figure
        effects = effects[effects["scale"].isna() | (effects["scale"] == "per question")]
    # The lack-of-fit test is a panel's verdict, not a term: it goes into the panel's title.
    fit_tests = effects[effects["factor"] == "lack of fit"].set_index("benchmark")["p_value"]
    effects = effects[effects["factor"] != "lack of fit"]
    benchmarks = list(dict.fromkeys(effects["benchmark"])) or ["(no benchmark)"]
    terms = list(dict.fromkeys(effects["term"])) or ["(no term)"]
    nrows, ncols = _grid(len(benchmarks))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 + 3.0 * ncols, 1.1 + (0.55 * len(terms) + 1.1) * nrows),
                             sharey=True, squeeze=False)
    for ax in axes.flat[len(benchmarks):]:
        ax.set_visible(False)
    for ax, bench in zip(axes.flat, benchmarks):
        rows = effects[effects["benchmark"] == bench].set_index("term")
        ax.axvline(0.0, color="0.6", lw=1, ls="--")
        for y, term in enumerate(terms):
            if term not in rows.index or pd.isna(rows.loc[term, "estimate"]):
                note = str(rows.loc[term, "note"]) if term in rows.index and "note" in rows else ""
                aliased = "not estimable apart from" in note or "partially aliased" in note
                ax.text(0.0, y, "aliased (design.md)" if aliased else "not identified", ha="center", va="center",
                        fontsize=7, color="0.45")
                continue
            r = rows.loc[term]
            # An interval never reaches past its metric's range of differences, [-1, 1]: clipped, with an arrow.
            low, high = max(r["ci_low"], -1.0), min(r["ci_high"], 1.0)
            ax.errorbar(r["estimate"], y, xerr=[[r["estimate"] - low], [high - r["estimate"]]],
                        fmt="o", color=FACTOR_COLOURS.get(r["factor"], "k"), capsize=3, ms=5)
            for end, clipped in ((low, r["ci_low"] < -1.0), (high, r["ci_high"] > 1.0)):
                if clipped:
                    ax.annotate("", (end, y), (end - 0.05 * (1 if end > 0 else -1), y),
                                arrowprops={"arrowstyle": "->", "color": "0.3"})
            if pd.notna(r.get("p_holm")) and r["p_holm"] < 0.05:
                ax.annotate("*", (r["estimate"], y), xytext=(0, 4), textcoords="offset points", ha="center",
                            fontsize=10)
        first = effects[effects["benchmark"] == bench].iloc[0] if len(rows) else None
        lof = f"\nlack of fit p = {fit_tests[bench]:.2g}" if bench in fit_tests.index else ""
        ax.set_title(_panel_title(bench, first) + lof, fontsize=9)
        unit = "P(correct)" if first is None or first["outcome"] == "correct" else "mean score (0-1)"
        ax.set_xlabel(f"change in {unit}", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", color="0.9")
        ax.set_ylim(len(terms) - 0.5, -0.5)
    axes[0, 0].set_yticks(range(len(terms)), terms)
    fig.suptitle(_caption(effects), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_speed(speed: pd.DataFrame, path: Path) -> None:
    """Training samples/s per stage and evaluation questions/s, one bar per cell."""
    panels = [("stage1_samples_per_s", "Stage 1 training", "samples / s"),
              ("stage2_samples_per_s", "Stage 2 training", "samples / s"),
              ("eval_questions_per_s", "Evaluation (generation)", "questions / s")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 0.9 + 0.38 * max(len(speed), 2)),
                             sharey=True, squeeze=False)
    cells = list(speed["cell"])
    colours = [plt.cm.tab10(i % 10) for i in pd.factorize(speed["language_model"])[0]]
    for ax, (column, title, unit) in zip(axes.flat, panels):
        values = pd.to_numeric(speed[column], errors="coerce")
        ax.barh(range(len(cells)), values.fillna(0.0), color=colours)
        for y, v in enumerate(values):
            ax.text(v if v == v else 0, y, f" {v:.3g}" if v == v else " n/a", va="center", fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(unit)
        ax.grid(axis="x", color="0.9")
        ax.set_axisbelow(True)
        ax.margins(x=0.2)
    axes[0, 0].set_yticks(range(len(cells)), cells, fontsize=8)
    axes[0, 0].invert_yaxis()
    levels = list(dict.fromkeys(speed["language_model"]))
    handles = [plt.Rectangle((0, 0), 1, 1, color=plt.cm.tab10(i % 10)) for i in range(len(levels))]
    axes[0, -1].legend(handles, [f"LM {lv}" for lv in levels], fontsize=8, loc="lower right")
    fig.suptitle("Throughput per cell (n/a: the cell has no such stage)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
