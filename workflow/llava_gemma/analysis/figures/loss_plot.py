"""The training loss figure: one row per language model, stage 1 and stage 2 side by side.

Within a panel the runs differ by vision tower (colour) and connector pretraining (solid: pretrained
connector, dashed: skipped), and each line carries its name at its right end (labels that would overlap
are pushed apart), so curves that end close together can still be told apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.ticker
import pandas as pd

from llava_gemma.analysis.figures.plots import DPI, plt

TITLES = {"stage1": "stage 1: connector pretraining", "stage2": "stage 2: instruction tuning"}
MIN_LABEL_GAP = 0.055  # in axes fractions: end labels closer than this are pushed apart


def _split(name: str) -> tuple[str, str, str]:
    """(language model, tower, connector) of a run name: ``<lm>_<tower>`` (stage 1) or a cell name; a
    replicate's ``_r<k>`` suffix is not a level."""
    parts = [p for p in name.split("_") if not re.fullmatch(r"r\d+", p)]
    return parts[0], parts[1], parts[2] if len(parts) > 2 else "pretrain"


def _replicate(name: str) -> str:
    """', r2' for a second replicate's run (its curve would otherwise carry its first replicate's label)."""
    match = re.search(r"_(r\d+)$", name)
    return f", {match.group(1)}" if match else ""


def _spread(positions: list[float], gap: float) -> list[float]:
    """Label heights (axes fractions) in the given order, moved apart to at least ``gap`` and kept in [0, 1]."""
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    placed = [0.0] * len(positions)
    last = -1.0
    for i in order:
        placed[i] = max(positions[i], last + gap)
        last = placed[i]
    overflow = max(0.0, last - 1.0)  # push the whole stack down if it runs off the top
    return [p - overflow for p in placed]


def _label_ends(ax, ends: list[tuple[str, float, float, tuple]]) -> None:
    """Write each run's label just right of its last point, without two labels on top of each other."""
    if not ends:
        return
    to_axes = ax.transAxes.inverted()
    heights = [to_axes.transform(ax.transData.transform((x, y)))[1] for _, x, y, _ in ends]
    for (label, _, _, colour), height in zip(ends, _spread(heights, MIN_LABEL_GAP)):
        ax.annotate(label, xy=(1.01, height), xycoords="axes fraction", fontsize=7, color=colour, va="center")


def plot_loss(curves: dict[str, dict[str, pd.DataFrame]], path: Path, smooth: int = 5) -> None:
    fig = draw_loss(curves, smooth)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def draw_loss(curves: dict[str, dict[str, pd.DataFrame]], smooth: int = 5):
    """Loss against optimizer step (moving average of ``smooth`` logged steps, log scale) per LM and stage."""
    runs = {(stage, name): log for stage in ("stage1", "stage2") for name, log in curves.get(stage, {}).items()}
    lms = list(dict.fromkeys(_split(name)[0] for _, name in sorted(runs, key=lambda k: k[1]))) or ["(none)"]
    towers = list(dict.fromkeys(_split(name)[1] for _, name in sorted(runs, key=lambda k: k[1])))
    colour = {t: plt.cm.tab10(i % 10) for i, t in enumerate(towers)}
    stages = ["stage1", "stage2"] if curves.get("stage1") else ["stage2"]
    fig, axes = plt.subplots(len(lms), len(stages), figsize=(5.6 * len(stages) + 1.2, 3.2 * len(lms)),
                             squeeze=False, sharex="col")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 0.6, not 6 x 10^-1
    for row, lm in enumerate(lms):
        for col, stage in enumerate(stages):
            ax = axes[row, col]
            ends = []
            for (s, name), log in sorted(runs.items()):
                lm_of, tower, connector = _split(name)
                if s != stage or lm_of != lm:
                    continue
                loss = log["loss"].rolling(smooth, min_periods=1).mean()
                label = (tower if stage == "stage1" else f"{tower}, {connector}") + _replicate(name)
                ax.plot(log["step"], loss, "-" if connector == "pretrain" else "--", color=colour[tower], lw=1.5,
                        label=label)
                ends.append((label, float(log["step"].iloc[-1]), float(loss.iloc[-1]), colour[tower]))
            ax.set_title(f"LM {lm}: {TITLES[stage]}", fontsize=10)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # steps, not 1.25
            ax.grid(color="0.9")
            if row == len(lms) - 1:
                ax.set_xlabel("optimizer step")
            if col == 0:
                ax.set_ylabel(f"loss (log; mean of {smooth} steps)", fontsize=9)
            if ends:  # named at their ends rather than in a legend, which would cover curves
                fig.canvas.draw()  # settle the axis limits before placing labels in axes fractions
                _label_ends(ax, ends)
            else:
                ax.text(0.5, 0.5, "no training log", transform=ax.transAxes, ha="center", color="0.45")
    fig.suptitle("Training loss per language model (colour: vision tower; dashed: connector not pretrained)",
                 fontsize=10)
    fig.tight_layout()
    return fig
