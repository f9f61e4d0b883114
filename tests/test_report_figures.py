"""The report's figures keep their panels readable: relevancy maps of equal size in every column (the colour
bar has its own column), and loss curves split per language model with every line labelled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from llava_gemma.analysis.figures.loss_plot import _spread, draw_loss
from llava_gemma.analysis.figures.plots import plt
from llava_gemma.analysis.figures.relevancy_figure import draw_relevancy

from .conftest import draw_scene

CELLS = [f"{lm}_{tower}_{c}" for lm in ("2b", "7b") for tower in ("clip", "dinov2") for c in ("pretrain", "skip")]


def test_every_relevancy_column_has_the_same_width_and_the_colour_bar_stays_outside(tmp_path):
    draw_scene("green").save(tmp_path / "img.png")
    rng = np.random.default_rng(0)
    per_cell = {cell: [{"benchmark": "pope", "qid": str(q), "prompt": "Is there a circle in the image?",
                        "image_path": str(tmp_path / "img.png"), "answer_token": "Yes", "grid": [4, 4],
                        "relevancy": rng.random((4, 4)).tolist()} for q in range(3)] for cell in CELLS}
    fig = draw_relevancy(per_cell)
    fig.canvas.draw()
    maps = [ax for ax in fig.axes if ax.images]
    colour_bar = [ax for ax in fig.axes if not ax.images]
    assert len(maps) == 3 * (len(CELLS) + 1) and len(colour_bar) == 1
    # Drawn images keep their aspect ratio inside their axes box: compare the boxes actually drawn.
    widths = {round(ax.get_position().width, 4) for ax in maps}
    assert len(widths) == 1, widths
    assert max(ax.get_position().x1 for ax in maps) < colour_bar[0].get_position().x0
    plt.close(fig)


def loss_log(start: float, rate: float, steps: int) -> pd.DataFrame:
    s = np.arange(1, steps + 1)
    return pd.DataFrame({"step": s, "loss": 1.0 + start * np.exp(-s / rate)})


def test_loss_figure_has_a_panel_per_language_model_and_stage_with_labelled_lines():
    curves = {"stage1": {f"{lm}_{t}": loss_log(4, 10, 60) for lm in ("2b", "7b") for t in ("clip", "dinov2")},
              "stage2": {cell: loss_log(3, 30 + i, 250) for i, cell in enumerate(CELLS)}}
    fig = draw_loss(curves)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "LM 2b: stage 1: connector pretraining", "LM 2b: stage 2: instruction tuning",
        "LM 7b: stage 1: connector pretraining", "LM 7b: stage 2: instruction tuning"]
    stage2 = panels[1]
    labels = [line.get_label() for line in stage2.get_lines()]
    assert labels == ["clip, pretrain", "clip, skip", "dinov2, pretrain", "dinov2, skip"]
    ends = sorted(a.get_text() for a in stage2.texts)
    assert ends == sorted(labels)  # every line named at its end
    heights = sorted(a.xyann[1] if hasattr(a, "xyann") else a.get_position()[1] for a in stage2.texts)
    assert min(np.diff(heights)) >= 0.05  # end labels do not sit on top of each other
    styles = {line.get_label(): (line.get_linestyle(), line.get_color()) for line in stage2.get_lines()}
    assert styles["clip, pretrain"][0] == "-" and styles["clip, skip"][0] == "--"
    assert styles["clip, pretrain"][1] == styles["clip, skip"][1] != styles["dinov2, skip"][1]
    plt.close(fig)


@pytest.mark.parametrize(("positions", "expected"), [
    ([0.5, 0.5, 0.5], [0.5, 0.6, 0.7]), ([0.9, 0.95], [0.9, 1.0]), ([0.98, 0.99], [0.9, 1.0]), ([0.2], [0.2])])
def test_end_labels_are_spread_and_kept_inside(positions, expected):
    assert _spread(positions, 0.1) == pytest.approx(expected)


def test_loss_figure_without_logs_says_so(tmp_path):
    fig = draw_loss({"stage1": {}, "stage2": {}})
    assert any("no training log" in t.get_text() for ax in fig.axes for t in ax.texts)
    plt.close(fig)


def test_replicated_runs_keep_their_levels_and_are_told_apart():
    """A second replicate (``_r2``) is neither a level nor a copy of its first replicate's label."""
    curves = {"stage1": {"2b_clip": loss_log(4, 10, 30), "2b_clip_r2": loss_log(4, 11, 30)},
              "stage2": {"2b_clip_skip": loss_log(3, 30, 60), "2b_clip_skip_r2": loss_log(3, 31, 60)}}
    fig = draw_loss(curves)
    stage1, stage2 = [ax for ax in fig.axes if ax.get_title()]
    assert [(line.get_label(), line.get_linestyle()) for line in stage1.get_lines()] == [("clip", "-"),
                                                                                         ("clip, r2", "-")]
    assert [line.get_label() for line in stage2.get_lines()] == ["clip, skip", "clip, skip, r2"]
    plt.close(fig)


def test_effects_figure_leaves_official_scales_and_the_fit_test_out_of_its_rows(tmp_path):
    from llava_gemma.analysis.figures.plots import plot_effects

    common = {"benchmark": "pope", "n_questions": 10, "n_clusters": 5, "n_runs": 8, "n_cells": 4,
              "clustered_by": "image and run", "outcome": "correct"}
    effects = pd.DataFrame([
        {**common, "term": "vision tower: dinov2 instead of clip", "factor": "vision_tower", "estimate": 0.1,
         "ci_low": 0.0, "ci_high": 0.2, "p_holm": 0.2, "scale": "per question",
         "note": "main effects not estimable clear of two-factor interactions: estimates vision_tower + a:b"},
        {**common, "term": "vision tower: dinov2 instead of clip", "factor": "vision_tower", "estimate": 0.3,
         "ci_low": 0.1, "ci_high": 0.5, "p_holm": 0.2, "scale": "POPE F1 (mean over splits; delta method)"},
        {**common, "term": "lack of fit of the main-effects model", "factor": "lack of fit", "p_value": 0.031,
         "scale": "per question"}])
    seen = {}
    original = plt.subplots

    def spy(*args, **kwargs):
        fig, axes = original(*args, **kwargs)
        seen["axes"], seen["fig"] = axes, fig
        return fig, axes

    plt.subplots = spy
    try:
        plot_effects(effects, tmp_path / "effects.png")
    finally:
        plt.subplots = original
    ax = seen["axes"][0, 0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["vision tower: dinov2 instead of clip"]
    assert ax.get_title().endswith("8 runs of 4 cells\nlack of fit p = 0.031")
    assert len(ax.lines) >= 1 and (tmp_path / "effects.png").is_file()
    assert "Main effects are not estimable clear of two-factor interactions" in seen["fig"]._suptitle.get_text()
