"""The smoke run on a new device: steps at data.max_length, device answers checked against the CPU's,
and CUDA's optimizer built without compiling anything."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from llava_gemma.eval.device_check import DeviceAnswersDiffer, compare_answers, device_answers

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, device: str, answers: dict) -> Path:
    path.write_text(json.dumps({"device": device, "benchmark": "pope", "model": "m", "answers": answers}))
    return path


def test_equal_answers_pass_and_differing_ones_are_named_in_one_sentence(tmp_path):
    cpu = write(tmp_path / "cpu.json", "cpu", {"q1": "Yes", "q2": "No", "q3": "Yes"})
    same = write(tmp_path / "hpu_same.json", "hpu", {"q1": "Yes", "q2": "No", "q3": "Yes"})
    assert compare_answers(same, cpu, tmp_path / "ok.json")["equal"]
    other = write(tmp_path / "hpu.json", "hpu", {"q1": "Yes", "q2": "Yes", "q3": "<pad><pad>"})
    with pytest.raises(DeviceAnswersDiffer) as err:
        compare_answers(other, cpu, tmp_path / "bad.json")
    message = str(err.value)
    assert "hpu and CPU answer 2 of 3 pope questions differently (q2, q3)" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert json.loads((tmp_path / "bad.json").read_text())["differing"] == ["q2", "q3"]


def test_device_answers_on_cpu_answer_the_first_questions(tmp_path):
    """The command's own path (benchmark loading, batching, greedy fp32) on a toy cell and a POPE folder."""
    from llava_gemma.model.assemble import assemble_llava
    from PIL import Image

    torch.manual_seed(0)
    model, processor = assemble_llava(ROOT / "models" / "toy-gemma-2b", ROOT / "models" / "toy-clip")
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    data = tmp_path / "pope"
    (data / "val2014").mkdir(parents=True)
    for split in ("random", "popular", "adversarial"):
        lines = []
        for i in range(4):
            Image.new("RGB", (40, 40), (200, 40 * i, 30)).save(data / "val2014" / f"{i}.jpg")
            lines.append(json.dumps({"question_id": i, "image": f"{i}.jpg", "text": f"Is there a dog number {i}?",
                                     "label": "yes" if i % 2 else "no"}))
        (data / f"coco_pope_{split}.json").write_text("\n".join(lines) + "\n")
    result = device_answers(tmp_path / "model", "pope", data, tmp_path / "cpu.json", device="cpu", questions=5,
                            max_new_tokens=4)
    assert result["device"] == "cpu" and len(result["answers"]) == 5
    again = device_answers(tmp_path / "model", "pope", data, tmp_path / "cpu2.json", device="cpu", questions=5,
                           max_new_tokens=4)
    assert compare_answers(tmp_path / "cpu2.json", tmp_path / "cpu.json")["equal"]  # greedy: reproducible
    assert again["answers"] == result["answers"]


def test_smoke_rule_runs_at_max_length_and_checks_the_device_against_the_cpu(tmp_path):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    target = "results/smoke/stage2/2b_clip/device_check.json"
    done = subprocess.run([sys.executable, "-m", "snakemake", target, "-n", "-p", "--cores", "1", "-s",
                           str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(ROOT / "config.yaml")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shell = done.stdout
    pad_to = re.search(r'"pad_to": (\d+)', shell)
    assert pad_to and int(pad_to.group(1)) == config["data"]["max_length"]
    assert "device-answers" in shell and "--device cpu" in shell and "compare-answers" in shell


def test_cuda_uses_torchs_fused_adamw_through_deepspeed():
    """No DeepSpeed fused_adam op (compiled with nvcc on the node): DeepSpeed builds torch.optim.AdamW(fused=True)."""
    from deepspeed.runtime.engine import DeepSpeedEngine
    from llava_gemma.study.batch_plan import plan_batch
    from llava_gemma.train.deepspeed_config import deepspeed_config

    params = deepspeed_config(3, "bf16", "cuda", plan_batch(128, 8, 16))["optimizer"]["params"]
    assert params["torch_adam"] is True and params["fused"] is True
    given = {k: v for k, v in params.items() if v != "auto"} | {"lr": 1e-3}
    optimizer_class, extra = DeepSpeedEngine.get_optimizer_configuration(None, given, True)  # torch_adam: no self
    assert optimizer_class is torch.optim.AdamW
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = optimizer_class([weight], **given, **extra)  # the call DeepSpeed makes with the rest
    assert optimizer.defaults["fused"] is True
    cpu = deepspeed_config(2, "fp32", "cpu", plan_batch(8, 1, 8))["optimizer"]["params"]
    assert cpu["torch_adam"] is True and "fused" not in cpu  # the toy study's optimizer is unchanged
