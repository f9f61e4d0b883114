"""Table 1's bootstrap resamples images whole where questions share one (eval/bootstrap.py)."""

from __future__ import annotations

import numpy as np
import pytest
from llava_gemma.eval.benchmarks.base import Question
from llava_gemma.eval.benchmarks.gqa import GQABenchmark
from llava_gemma.eval.benchmarks.pope import PopeBenchmark
from llava_gemma.eval.bootstrap import cluster_components, mean_interval


def test_cluster_components_sum_per_cluster_in_first_seen_order():
    sums, strata = cluster_components([[1, 1], [0, 1], [1, 1]], ["b", "a", "b"], strata=["x", "y", "x"])
    np.testing.assert_array_equal(sums, [[2, 2], [0, 1]])
    assert strata == ["x", "y"]
    with pytest.raises(ValueError, match="spans several strata"):
        cluster_components([1, 0], ["a", "a"], strata=["x", "y"])


def test_image_clusters_widen_the_interval_when_an_images_answers_move_together():
    rng = np.random.default_rng(0)
    per_image = np.repeat(rng.random(40) < 0.5, 10).astype(float)  # 40 images, 10 identical answers each
    images = np.repeat(np.arange(40), 10)
    low_q, high_q = mean_interval(per_image)
    low_i, high_i = mean_interval(per_image, clusters=images)
    assert (high_i - low_i) / (high_q - low_q) == pytest.approx(np.sqrt(10), rel=0.2)


def test_gqa_and_pope_records_name_their_image_and_aggregate_by_it():
    gqa = GQABenchmark()
    q = Question("1", None, "q", "red", {"structural": "query", "image_id": "n123"})
    assert gqa.score(q, "red")["image"] == "n123"
    records = [{**gqa.score(Question(str(i), None, "q", "red", {"structural": "query", "image_id": f"im{i // 5}"}),
                            "red" if i < 50 else "blue"), "id": str(i)} for i in range(100)]
    assert gqa.aggregate(records)["accuracy_ci_low"] < 0.5 < gqa.aggregate(records)["accuracy_ci_high"]
    pope = PopeBenchmark()
    records = [pope.score(Question(f"{split}-{i}", None, "q", "yes" if i % 2 else "no",
                                   {"split": split, "image_id": f"COCO_{i // 3}.jpg"}), "yes")
               for split in ("random", "popular", "adversarial") for i in range(30)]
    assert {r["image"] for r in records} == {f"COCO_{i}.jpg" for i in range(10)}  # shared across splits
    m = pope.aggregate(records)
    assert m["split_mean/f1_ci_low"] <= m["split_mean/f1"] <= m["split_mean/f1_ci_high"]
