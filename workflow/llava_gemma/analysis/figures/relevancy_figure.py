"""The relevancy figure: one row per example question, the image first, then one overlay per cell."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

from llava_gemma.analysis.figures.plots import DPI, plt


def _normalised(relevancy: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1] per map, so each overlay shows where that cell looks, not how strongly."""
    low, high = float(relevancy.min()), float(relevancy.max())
    return (relevancy - low) / (high - low) if high > low else np.zeros_like(relevancy)


def plot_relevancy(per_cell: dict[str, list[dict]], path: Path) -> None:
    fig = draw_relevancy(per_cell)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def draw_relevancy(per_cell: dict[str, list[dict]]):
    """The figure (matplotlib Figure): one row per example, the image, then one overlay per cell, a colour bar."""
    from PIL import Image

    cells = list(per_cell)
    examples = per_cell[cells[0]] if cells else []
    if not examples:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no relevancy examples configured (report.relevancy_examples)", ha="center")
        return fig
    ncols = len(cells) + 1
    # The colour bar gets a narrow grid column of its own: taken from the last map's axes (colorbar(ax=...)),
    # it would shrink that column's maps below the others.
    fig = plt.figure(figsize=(1.75 * ncols + 1.2, 2.5 * len(examples)))
    grid = fig.add_gridspec(len(examples), ncols + 1, width_ratios=[1.0] * ncols + [0.07], hspace=0.75)
    axes = np.array([[fig.add_subplot(grid[row, col]) for col in range(ncols)] for row in range(len(examples))])
    for row, example in enumerate(examples):
        with Image.open(example["image_path"]) as img:
            image = np.asarray(img.convert("RGB"))
        extent = (0, image.shape[1], image.shape[0], 0)
        question = example["prompt"].split("\n")[0]
        axes[row, 0].imshow(image)
        axes[row, 0].set_title(f"{example['benchmark']} {example['qid']}", fontsize=8, fontweight="bold")
        axes[row, 0].set_xlabel("\n".join(textwrap.wrap(question, 26)[:3]), fontsize=7)
        for col, cell in enumerate(cells, start=1):
            entry = per_cell[cell][row]
            ax = axes[row, col]
            ax.imshow(image)
            heat = ax.imshow(_normalised(np.asarray(entry["relevancy"], dtype=float)), cmap="inferno", alpha=0.6,
                             extent=extent, interpolation="nearest", vmin=0.0, vmax=1.0)
            ax.set_title(cell if row == 0 else "", fontsize=7)
            ax.set_xlabel(f"answer: {entry['answer_token'].strip() or repr(entry['answer_token'])}", fontsize=7)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    colour_bar = fig.add_subplot(grid[:, -1])
    fig.colorbar(heat, cax=colour_bar, label="relevancy (per map, 0-1)")
    fig.suptitle("Relevancy of image patches for the first answer token (Chefer et al. 2021)", fontsize=10)
    return fig


def write_relevancy_figure(map_files: list[Path], path: Path) -> dict:
    per_cell = {f.stem: json.loads(f.read_text()) for f in map_files}
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_relevancy(per_cell, path)
    return {"cells": list(per_cell), "examples": len(next(iter(per_cell.values()), []))}
