"""The hpu path proved on CPU through optimum-habana's own classes (tests/gaudi_cpu_checks.py).

A subprocess installs a no-op stand-in for the Habana runtime (tests/habana_stub.py), runs
``adapt_transformers_to_gaudi`` and then exactly what train/gaudi.py and eval/gaudi.py run: a stage-2
training step with gradient checkpointing through optimum-habana's Gaudi Gemma, and evaluation's
static-shape ``generate`` through optimum-habana's generation loop. This process computes the same
with plain transformers and compares: same loss and gradients, same greedy answers.

What optimum-habana cannot run on CPU even so, and is checked against its source in test_gaudi.py:
``GaudiTrainingArguments.__post_init__`` (its device setup needs an HPU and Habana's DeepSpeed) and so
``GaudiTrainer``; the stand-in replaces ``mark_step``, HPU graphs and the fused SDPA kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_gaudi import optimum_habana_source

ROOT = Path(__file__).resolve().parents[1]
LM = ROOT / "models" / "toy-gemma-2b"
TOWERS = {"clip": ROOT / "models" / "toy-clip", "dinov2": ROOT / "models" / "toy-dinov2"}
SEED = 3
MAX_NEW_TOKENS = 6


def training_batch(tower: Path) -> dict[str, list]:
    """Two left-padded rows with an image each, labels on the text after the image."""
    from llava_gemma.model.assemble import assemble_llava
    from PIL import Image

    _, processor = assemble_llava(LM, tower)
    texts = ["<image>\nWhat colour is the circle? It is red.", "<image>\nIs there a square? No."]
    images = [Image.new("RGB", (40, 40), (200, 30, 30)), Image.new("RGB", (40, 40), (30, 30, 200))]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    labels = inputs["input_ids"].clone()
    image = labels == processor.tokenizer.convert_tokens_to_ids("<image>")
    labels[image.cumsum(1) == 0] = -100  # padding and <bos>: a pad row's output predicts nothing
    labels[image] = -100
    return {"input_ids": inputs["input_ids"].tolist(), "attention_mask": inputs["attention_mask"].tolist(),
            "pixel_values": inputs["pixel_values"].tolist(), "labels": labels.tolist()}


def plain_training_step(spec: dict) -> dict:
    """The same step with plain transformers; saves the connector both runs start from."""
    from llava_gemma.model.assemble import assemble_llava, save_connector, set_trainable

    torch.manual_seed(SEED)
    model, _ = assemble_llava(spec["lm"], spec["tower"])
    save_connector(model, spec["connector"])
    set_trainable(model, "stage2")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    loss = model(**{k: torch.tensor(v) for k, v in spec["batch"].items()}).loss
    loss.backward()
    return {"loss": loss.item(),
            "grad_norms": {name: p.grad.norm().item() for name, p in model.named_parameters() if p.grad is not None}}


def packed_batch(batch: dict) -> dict[str, list]:
    """The two rows of ``training_batch`` as one packed row (train/packed_batches.py's layout): both samples,
    positions restarting at each, its first label ignored, then padding."""
    ids, mask, labels = (torch.tensor(batch[k]) for k in ("input_ids", "attention_mask", "labels"))
    samples = [(ids[i][mask[i] == 1], labels[i][mask[i] == 1]) for i in range(len(ids))]
    width = sum(len(x) for x, _ in samples) + 5
    row_ids, row_labels = torch.zeros(width, dtype=torch.long), torch.full((width,), -100)
    positions, attention, at = torch.zeros(width, dtype=torch.long), torch.zeros(width, dtype=torch.long), 0
    for x, lab in samples:
        n = len(x)
        row_ids[at:at + n], row_labels[at:at + n], attention[at:at + n] = x, lab, 1
        row_labels[at] = -100
        positions[at:at + n] = torch.arange(n)
        at += n
    positions[at:] = torch.arange(width - at)
    return {"input_ids": [row_ids.tolist()], "labels": [row_labels.tolist()], "attention_mask": [attention.tolist()],
            "position_ids": [positions.tolist()], "pixel_values": batch["pixel_values"]}


def plain_packed_step(spec: dict) -> dict:
    """The packed row with plain transformers (SDPA with the 4-D mask), from the saved connector."""
    from llava_gemma.model.assemble import assemble_llava, load_connector, set_trainable
    from llava_gemma.model.packed_attention import attach_packed_attention
    from llava_gemma.train.supervised_loss import supervised_loss

    model, _ = assemble_llava(spec["lm"], spec["tower"])
    load_connector(model, spec["connector"])
    set_trainable(model, "stage2")
    attach_packed_attention(model)
    model.train()
    loss, _ = supervised_loss(model, {k: torch.tensor(v) for k, v in spec["packed_batch"].items()})
    loss.backward()
    return {"loss": loss.item(),
            "grad_norms": {name: p.grad.norm().item() for name, p in model.named_parameters() if p.grad is not None}}


def evaluation_cell(tower: Path, root: Path) -> tuple[dict, list[str]]:
    """A freshly assembled cell saved as a checkpoint, a few questions, and plain transformers' answers."""
    from llava_gemma.eval.benchmarks.base import Question
    from llava_gemma.eval.generate import PixelCache, answer_rows, chat_prompt
    from llava_gemma.model.assemble import assemble_llava
    from PIL import Image

    torch.manual_seed(SEED)
    model, processor = assemble_llava(LM, tower)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    Image.new("RGB", (40, 40), (200, 30, 30)).save(root / "red.png")
    Image.new("RGB", (52, 40), (30, 180, 60)).save(root / "green.png")
    questions = [Question("q0", root / "red.png", "What colour is the circle?", ""),
                 Question("q1", root / "green.png", "Is there a star in the image?", ""),
                 Question("q2", None, "How many sides does a triangle have?", "")]
    prompts = [chat_prompt(processor, q) for q in questions]
    answers = answer_rows(model.eval(), processor, questions, prompts, [0, 1, 2],
                          PixelCache(processor.image_processor, blind=False), MAX_NEW_TOKENS)
    cell = {"model_dir": str(root), "max_new_tokens": MAX_NEW_TOKENS,
            "questions": [{"id": q.qid, "image": str(q.image_path) if q.image_path else None, "prompt": q.prompt}
                          for q in questions]}
    return cell, [answers[i] for i in range(len(questions))]


@pytest.fixture(scope="module")
def gaudi_on_cpu(tmp_path_factory):
    """The checks' results (subprocess) and plain transformers' (here), run once for the module."""
    optimum_habana_source()  # skips (or fails in CI) without optimum-habana
    root = tmp_path_factory.mktemp("gaudi_cpu")
    training = {"lm": str(LM), "tower": str(TOWERS["dinov2"]), "connector": str(root / "connector.safetensors"),
                "batch": training_batch(TOWERS["dinov2"])}
    training["packed_batch"] = packed_batch(training["batch"])
    plain_training = plain_training_step(training)
    plain_packed = plain_packed_step(training)  # after the plain step, which saved the connector
    evaluation, plain_answers = {}, {}
    for name, tower in TOWERS.items():
        (root / name).mkdir()
        evaluation[name], plain_answers[name] = evaluation_cell(tower, root / name)
    spec = root / "spec.json"
    spec.write_text(json.dumps({"training": training, "evaluation": evaluation}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "workflow"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "tests.gaudi_cpu_checks", str(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    line = next((x for x in done.stdout.splitlines() if x.startswith("GAUDI-CPU-RESULTS ")), None)
    assert line, f"the checks did not report (exit {done.returncode}):\n{done.stderr[-4000:]}"
    return {"gaudi": json.loads(line.split(" ", 1)[1]), "plain_training": plain_training, "plain_packed": plain_packed,
            "plain_answers": plain_answers}


def test_training_step_with_checkpointing_runs_through_the_gaudi_gemma(gaudi_on_cpu):
    """Failure 2 of issue 21 (IndexError at step 1) and the Gemma layer repair, on the training path."""
    gaudi, plain = gaudi_on_cpu["gaudi"]["training"], gaudi_on_cpu["plain_training"]
    assert "error" not in gaudi, gaudi
    assert gaudi["lm_class"] == "GaudiGemmaModel"  # the LM is optimum-habana's, as on a Gaudi
    assert gaudi["fused_sdpa_calls"] > 0 and gaudi["fused_sdpa_keywords"]["use_flash_attention"]
    assert gaudi["use_cache_after"] is True  # restored after training: the saved config keeps it
    assert gaudi["loss"] == pytest.approx(plain["loss"], rel=1e-5), "the Gaudi Gemma computes another network"
    assert set(gaudi["grad_norms"]) == set(plain["grad_norms"])
    for name, norm in plain["grad_norms"].items():
        assert gaudi["grad_norms"][name] == pytest.approx(norm, rel=1e-3, abs=1e-7), name


def test_a_packed_row_runs_through_the_gaudi_gemma_fused_sdpa_with_its_mask(gaudi_on_cpu):
    """The block-diagonal 4-D mask and restarted positions reach the Gaudi Gemma's fused SDPA and RoPE:
    same loss and gradients as plain transformers' SDPA on the packed row, which equals the unpacked step."""
    gaudi, plain = gaudi_on_cpu["gaudi"]["packed_training"], gaudi_on_cpu["plain_packed"]
    assert "error" not in gaudi, gaudi
    assert gaudi["lm_class"] == "GaudiGemmaModel" and gaudi["fused_sdpa_calls"] > 0
    assert gaudi["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    # The two samples alone (left-padded rows, HF's full-logits loss): RoPE is relative, so the same loss.
    assert plain["loss"] == pytest.approx(gaudi_on_cpu["plain_training"]["loss"], rel=1e-4)
    assert set(gaudi["grad_norms"]) == set(plain["grad_norms"])
    for name, norm in plain["grad_norms"].items():
        assert gaudi["grad_norms"][name] == pytest.approx(norm, rel=1e-3, abs=1e-7), name


def test_gaudi_trainer_passes_no_fused_attention_to_a_llava(gaudi_on_cpu):
    """Why train/gaudi.py hooks the LM: GaudiTrainer's own switch skips any model_type but the LM's."""
    result = gaudi_on_cpu["gaudi"]["trainer_input_update"]
    assert "error" not in result, result
    assert result["updates"] is False and result["inputs"] == {}


@pytest.mark.parametrize("tower", sorted(TOWERS))
def test_gaudi_evaluation_answers_equal_plain_transformers(gaudi_on_cpu, tower):
    """Failure 3 of issue 21: the tower TypeError (DINOv2) and hidden states read as logits (both)."""
    gaudi = gaudi_on_cpu["gaudi"][f"evaluation_{tower}"]
    assert "error" not in gaudi, gaudi
    assert gaudi["llava_class"] == "LlavaForGaudiGeneration" and gaudi["lm_class"] == "GaudiGemmaModel"
    assert gaudi["fused_sdpa_calls"] > 0
    assert gaudi["answers"] == gaudi_on_cpu["plain_answers"][tower]
    assert any(gaudi["answers"])  # something was generated
