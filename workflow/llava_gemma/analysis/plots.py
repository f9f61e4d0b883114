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


def plot_effects(effects: pd.DataFrame, path: Path) -> None:
    """One panel per benchmark; per term a point with its 95% interval; terms left out named in grey."""
    benchmarks = list(dict.fromkeys(effects["benchmark"])) or ["(no benchmark)"]
    terms = list(dict.fromkeys(effects["term"])) or ["(no term)"]
    nrows, ncols = _grid(len(benchmarks))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 + 3.0 * ncols, 0.9 + (0.55 * len(terms) + 0.9) * nrows),
                             sharey=True, squeeze=False)
    for ax in axes.flat[len(benchmarks):]:
        ax.set_visible(False)
    for ax, bench in zip(axes.flat, benchmarks):
        rows = effects[effects["benchmark"] == bench].set_index("term")
        ax.axvline(0.0, color="0.6", lw=1, ls="--")
        for y, term in enumerate(terms):
            if term not in rows.index or pd.isna(rows.loc[term, "estimate"]):
                ax.text(0.0, y, "not identified", ha="center", va="center", fontsize=7, color="0.45")
                continue
            r = rows.loc[term]
            ax.errorbar(r["estimate"], y, xerr=[[r["estimate"] - r["ci_low"]], [r["ci_high"] - r["estimate"]]],
                        fmt="o", color=FACTOR_COLOURS.get(r["factor"], "k"), capsize=3, ms=5)
        first = effects[effects["benchmark"] == bench].iloc[0] if len(rows) else None
        n = "" if first is None else f"\n{int(first['n_questions'])} questions x {int(first['n_cells'])} cells"
        ax.set_title(f"{bench}{n}", fontsize=9)
        unit = "P(correct)" if first is None or first["outcome"] == "correct" else "mean score (0-1)"
        ax.set_xlabel(f"change in {unit}", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", color="0.9")
        ax.set_ylim(len(terms) - 0.5, -0.5)
    axes[0, 0].set_yticks(range(len(terms)), terms)
    fig.suptitle("Factor effects: linear probability model, 95% intervals clustered by question and by run",
                 fontsize=10)
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
