"""Model cards: the hub's format (huggingface_hub parses them), base models, data, licence, and a model-index
whose values are the cell's metrics.json values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from llava_gemma.analysis.tables.model_card import GEMMA_TERMS, write_model_card
from llava_gemma.analysis.tables.table1 import COLUMNS
from llava_gemma.cli import main

STAGE = dict(learning_rate=2e-5, global_batch_size=128, per_device_batch_size=4, epochs=1, warmup_ratio=0.03,
             weight_decay=0.0, lr_scheduler="cosine", zero_stage=3, group_by_modality_length=True)
PAPER_CELL = dict(
    study="llava-gemma-paper", cell="2b_clip_pretrain",
    factors=dict(language_model="2b", vision_tower="clip", connector="pretrain"),
    sources=dict(language_model="google/gemma-2b-it", vision_tower="openai/clip-vit-large-patch14-336"),
    datasets=["liuhaotian/LLaVA-CC3M-Pretrain-595K", "liuhaotian/LLaVA-Instruct-150K"],
    train=dict(precision="bf16", backend="hpu", stage1={**STAGE, "learning_rate": 1e-3}, stage2=STAGE),
    eval=dict(benchmarks={"pope": {}, "gqa": {"limit": 300}, "mme": {}}, blind_control=["pope"]))


def write_metrics(eval_dir: Path) -> dict[str, dict]:
    written = {}
    for i, (bench, key) in enumerate(v for v in COLUMNS.values() if v[0] in PAPER_CELL["eval"]["benchmarks"]):
        metrics = json.loads((eval_dir / bench / "metrics.json").read_text()) \
            if (eval_dir / bench / "metrics.json").exists() else {"questions": 10, "other": 0.5}
        metrics.update({key: 0.61 + i / 100, f"{key}_ci_low": 0.52 + i / 100, f"{key}_ci_high": 0.7 + i / 100})
        (eval_dir / bench).mkdir(parents=True, exist_ok=True)
        (eval_dir / bench / "metrics.json").write_text(json.dumps(metrics))
        written[bench] = metrics
    return written


def card_metrics(card: ModelCard) -> dict[tuple[str, str], float]:
    return {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}


def test_final_card_parses_and_its_metrics_equal_metrics_json(tmp_path):
    written = write_metrics(tmp_path / "eval")
    out = tmp_path / "cards" / "README.md"
    assert main(["model-card", "--out", str(out), "--eval_dir", str(tmp_path / "eval"),
                 "--settings", json.dumps(PAPER_CELL)]) == 0
    card = ModelCard.load(out)
    expected = {(bench, key): value for bench, m in written.items() for key, value in m.items()
                if key.split("_ci_")[0] in {k for b, k in COLUMNS.values() if b == bench}}
    assert card_metrics(card) == expected  # every headline metric with both interval ends, nothing else
    assert len(expected) == 5 * 3  # pope acc+f1, gqa, mme cognition+perception: 5 metrics x (value, low, high)
    data = card.data.to_dict()
    assert data["base_model"] == ["google/gemma-2b-it", "openai/clip-vit-large-patch14-336"]
    assert data["datasets"] == PAPER_CELL["datasets"]
    assert data["license"] == "gemma" and data["license_link"] == GEMMA_TERMS
    assert data["pipeline_tag"] == "image-text-to-text" and data["library_name"] == "transformers"
    text = card.text
    for section in ("## Recipe", "## Intended use", "## How it was evaluated", "## Results"):
        assert section in text
    assert "learning rate 0.001, global batch 128" in text and "Gemma Terms of Use" in text
    assert "GQA (300 questions, seeded)" in text


def test_training_card_has_the_recipe_but_no_metrics(tmp_path):
    toy = {**PAPER_CELL, "study": "llava-gemma-toy", "cell": "2b_clip_skip", "datasets": [],
           "sources": {"language_model": None, "vision_tower": None},
           "factors": {**PAPER_CELL["factors"], "connector": "skip"},
           "train": {k: v for k, v in PAPER_CELL["train"].items() if k != "stage1"}}
    write_model_card(toy, tmp_path / "model" / "README.md")
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert not card.data.eval_results and "model-index" not in card.content
    data = card.data.to_dict()
    assert "license" not in data and "base_model" not in data  # toy backbones: no hub model, no Gemma terms
    assert "No stage 1" in card.text and "toy world" in card.text and "write_model_card" in card.text


def test_missing_metrics_name_the_file(tmp_path, capsys):
    assert main(["model-card", "--out", str(tmp_path / "c.md"), "--eval_dir", str(tmp_path / "eval"),
                 "--settings", json.dumps(PAPER_CELL)]) == 1
    assert "metrics.json is missing" in capsys.readouterr().err


@pytest.mark.workflow
def test_study_writes_every_cell_card_from_its_metrics(reduced_study):
    cells = sorted(p.name for p in (reduced_study / "results/cells").iterdir())
    assert cells
    for cell in cells:
        card = ModelCard.load(reduced_study / f"results/report/model_cards/{cell}/README.md")
        for (bench, key), value in card_metrics(card).items():
            metrics = json.loads((reduced_study / f"results/cells/{cell}/eval/{bench}/metrics.json").read_text())
            assert metrics[key] == value, (cell, bench, key)
        assert {b for b, _ in card_metrics(card)} == {"pope", "gqa", "mme", "mmvet", "vqav2", "mmvp", "scienceqa_img"}
        recipe_card = ModelCard.load(reduced_study / f"results/cells/{cell}/model/README.md")
        assert not recipe_card.data.eval_results and "## Recipe" in recipe_card.text


def test_the_card_says_how_stage_two_drew_its_steps():
    from llava_gemma.analysis.tables.model_card import grouping_phrase

    assert "random draw of one modality" in grouping_phrase({"group_by_modality_length": True})
    assert "sorted by length in groups of 50" in grouping_phrase({"group_by_modality_length": True,
                                                                  "length_group_steps": 50})
