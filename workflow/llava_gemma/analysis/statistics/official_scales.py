"""Effects on the benchmarks' official scales: MME points, MMVP pair accuracy, POPE F1.

The effect model regresses a per-unit outcome on the factors, so each official number is written as
the mean over units of an outcome whose run mean IS that number; ``fit_effects`` then gives effects
in the official unit, with the same two-way (unit, run) clustered intervals:

- MME points (``perception``: sum of the 10 perception subtasks' acc + acc+, max 2000; ``cognition``
  likewise over 4, max 800). Both are linear in per-image counts: an image of subtask s adds
  100 c / q_s + 100 a / m_s (c its correct questions, a = 1 if all are right, q_s and m_s the
  subtask's questions and images), so a row per (run, image) with y = images x that share has the
  run's points as its mean. Exact, clustered by image.
- MMVP pair accuracy: a row per (run, complete pair), y = 1 if both questions are right. Exact.
- POPE F1, LLaVA-1.5's headline (the mean over the three splits of each split's F1): F1 = 2TP /
  (2TP + FP + FN) is not a mean, so each question gets its delta-method pseudo-value F1 + IF_i
  (IF_i = [2(FP+FN) (tp_i - TP) - 2TP ((fp_i - FP) + (fn_i - FN))] / D^2 with TP, FP, FN shares and
  D = 2TP + FP + FN), weighted so their run mean is the split mean of F1 exactly. The interval is
  the linearised (first-order) one, clustered by image.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llava_gemma.eval.benchmarks.mme import COGNITION, PERCEPTION

SCALE_COLUMN = "scale"
PER_QUESTION = "per question"
MME_GROUPS = {"perception": PERCEPTION, "cognition": COGNITION}


def _keep(outcomes: pd.DataFrame, factors: list[str]) -> list[str]:
    return ["run", *[f for f in factors if f in outcomes]]


def mme_points(outcomes: pd.DataFrame, factors: list[str], group: str) -> pd.DataFrame | None:
    """Rows per (run, image) of the group's subtasks whose run mean is the run's points; None without them."""
    if "category" not in outcomes:
        return None
    rows = outcomes[outcomes["category"].isin(MME_GROUPS[group])]
    if rows.empty:
        return None
    keys = _keep(rows, factors)
    images = rows.groupby([*keys, "category", "cluster"], sort=False)["y"].agg(correct="sum", asked="size",
                                                                               right="min").reset_index()
    per_task = images.groupby(["run", "category"])
    questions = per_task["asked"].transform("sum")
    n_images = per_task["cluster"].transform("size")
    share = 100 * images["correct"] / questions + 100 * images["right"] / n_images
    total_images = images.groupby("run")["cluster"].transform("size")
    return images[keys].assign(question=images["cluster"], cluster=images["cluster"], cluster_field="image",
                               y=share * total_images, kind="score")


def mmvp_pairs(outcomes: pd.DataFrame, factors: list[str]) -> pd.DataFrame | None:
    """Rows per (run, complete pair): 1 if both of its questions are right."""
    keys = _keep(outcomes, factors)
    pairs = outcomes.groupby([*keys, "cluster"], sort=False)["y"].agg(right="min", asked="size").reset_index()
    pairs = pairs[pairs["asked"] == 2]
    if pairs.empty:
        return None
    return pairs[keys].assign(question=pairs["cluster"], cluster=pairs["cluster"], cluster_field="pair",
                              y=pairs["right"].astype(float), kind="correct")


def _f1_pseudo(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Each question's F1 + IF_i within one (run, split); their mean is the split's F1."""
    t, f_p, f_n = tp.mean(), fp.mean(), fn.mean()
    d = 2 * t + f_p + f_n
    if d == 0:
        return np.zeros(len(tp))  # no "yes" anywhere: F1 is 0, as eval_pope.py's guard gives
    f1 = 2 * t / d
    return f1 + (2 * (f_p + f_n) * (tp - t) - 2 * t * ((fp - f_p) + (fn - f_n))) / d ** 2


def pope_f1(outcomes: pd.DataFrame, factors: list[str]) -> pd.DataFrame | None:
    """Rows per (run, question) whose run mean is the run's split-mean F1 (delta-method pseudo-values)."""
    if not {"split", "parsed", "label"} <= set(outcomes):
        return None
    frame = outcomes.copy()
    yes_said, yes_true = frame["parsed"].astype(str) == "yes", frame["label"].astype(str) == "yes"
    frame["tp"], frame["fp"] = (yes_said & yes_true).astype(float), (yes_said & ~yes_true).astype(float)
    frame["fn"] = (~yes_said & yes_true).astype(float)
    frame["y"] = 0.0
    for (_, _), index in frame.groupby(["run", "split"]).groups.items():
        part = frame.loc[index]
        frame.loc[index, "y"] = _f1_pseudo(part["tp"].to_numpy(), part["fp"].to_numpy(), part["fn"].to_numpy())
    # Weight so the run mean is the plain mean over splits: question in split s counts n / (S n_s).
    n = frame.groupby("run")["y"].transform("size")
    n_split = frame.groupby(["run", "split"])["y"].transform("size")
    splits = frame.groupby("run")["split"].transform("nunique")
    frame["y"] = frame["y"] * n / (splits * n_split)
    return frame.assign(kind="score")[[*_keep(frame, factors), "question", "cluster", "cluster_field", "y", "kind"]]


def official_outcomes(benchmark: str, outcomes: pd.DataFrame, factors: list[str]) -> dict[str, pd.DataFrame]:
    """Scale name -> outcome rows on that official scale, for the benchmarks that have one."""
    made: dict[str, pd.DataFrame | None] = {}
    if benchmark == "mme":
        made = {f"MME {g} (points)": mme_points(outcomes, factors, g) for g in MME_GROUPS}
    elif benchmark == "mmvp":
        made = {"MMVP pair accuracy": mmvp_pairs(outcomes, factors)}
    elif benchmark == "pope":
        made = {"POPE F1 (mean over splits; delta method)": pope_f1(outcomes, factors)}
    return {name: frame for name, frame in made.items() if frame is not None and not frame.empty}
