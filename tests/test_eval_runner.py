"""Batched generation (same inputs as the processor, same answers one at a time) and the blind-image control."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from llava_gemma.analysis.tables.blind_control import build_blind_control
from llava_gemma.eval.benchmarks.base import Question
from llava_gemma.eval.generate import PixelCache, batch_inputs, chat_prompt, generate_answers, question_image
from llava_gemma.eval.run import evaluate_benchmark, evaluate_cell
from llava_gemma.model.assemble import assemble_llava
from llava_gemma.model.images import mean_colour
from llava_gemma.study.config import Cell

from .conftest import draw_scene
from .test_benchmarks_layouts import write_release, write_testdev

ROOT = Path(__file__).resolve().parents[1]


def test_batched_answers_equal_one_at_a_time_and_blind_ignores_the_image(tiny_backbones, tmp_path):
    model, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"])
    model.eval()
    questions = []
    for i, colour in enumerate(["red", "blue", "green", "red"]):
        path = tmp_path / f"{i}.jpg"
        draw_scene(colour, size=48 + 8 * i).save(path)  # different sizes exercise padding and cropping
        questions.append(Question(f"q{i}", path, "Is there a circle in the image?" + "?" * i, "yes"))
    questions.append(Question("text", None, "How many sides does a triangle have?", "three"))

    one = generate_answers(model, processor, questions, batch_size=1, max_new_tokens=3)
    batched = generate_answers(model, processor, questions, batch_size=4, max_new_tokens=3)
    assert one == batched

    blank = question_image(questions[1], processor.image_processor, blind=True)
    assert blank.getcolors() == [(blank.width * blank.height, mean_colour(processor.image_processor))]
    same_prompt = [Question(f"b{i}", q.image_path, "What colour?", "red") for i, q in enumerate(questions[:3])]
    blind = generate_answers(model, processor, same_prompt, batch_size=3, max_new_tokens=3, blind=True)
    assert len(set(blind)) == 1


def test_batch_inputs_equal_the_processors_and_the_pixel_cache_stays_bounded(tiny_backbones, tmp_path):
    _, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones["dinov2"])
    questions = []
    for i, colour in enumerate(["red", "blue", "green"]):
        draw_scene(colour, size=40 + 12 * i).save(tmp_path / f"{i}.png")
        questions.append(Question(f"q{i}", tmp_path / f"{i}.png", "What colour?" + " Really?" * i, colour))
    prompts = [chat_prompt(processor, q) for q in questions]
    images = [question_image(q, processor.image_processor, blind=False) for q in questions]
    processor.tokenizer.padding_side = "left"
    expected = processor(text=prompts, images=images, padding=True, return_tensors="pt")

    one_image = PixelCache(processor.image_processor, blind=False, max_bytes=1)  # keeps only the latest image
    ours = batch_inputs(processor, questions, prompts, [0, 1, 2], one_image)
    assert sorted(ours) == sorted(expected) and all(torch.equal(ours[k], expected[k]) for k in expected)
    assert len(one_image._pixels) == 1 and torch.equal(one_image(questions[0]), expected["pixel_values"][0])


def test_runner_writes_the_vqav2_submission_and_honours_the_token_cap(tiny_backbones, tmp_path):
    model, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"])
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    write_testdev(tmp_path / "data", full=True)
    metrics = evaluate_benchmark(tmp_path / "model", "vqav2_testdev", tmp_path / "data", tmp_path / "out",
                                 batch_size=2, max_new_tokens=2)
    assert metrics["scored"] is False and metrics["max_new_tokens"] == 2 and metrics["questions"] == 2
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    submission = json.loads((tmp_path / "out" / "submission.json").read_text())
    assert [s["question_id"] for s in submission] == [1000, 2000, 3000] and submission[2]["answer"] == ""
    assert [s["answer"] for s in submission[:2]] == [r["parsed"] for r in samples]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["note"] == metrics["note"]


def test_one_process_evaluates_a_cell_on_several_benchmarks(tiny_backbones, tmp_path):
    model, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones["dinov2"])
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    write_testdev(tmp_path / "data" / "vqav2_testdev", full=False)
    write_release(tmp_path / "data" / "mme")
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="lacks the subtask folders"):
        # Small caps: an untrained LM runs to its cap (LLaVA's 128 for MME), which costs seconds here.
        metrics = evaluate_cell(tmp_path / "model", {"vqav2_testdev": {"max_new_tokens": 3},
                                                     "mme": {"limit": 2, "max_new_tokens": 4}},
                                tmp_path / "data", out, batch_size=4)
    assert metrics["vqav2_testdev"]["max_new_tokens"] == 3 and (out / "vqav2_testdev" / "submission.json").is_file()
    assert metrics["mme"]["max_new_tokens"] == 4 and metrics["mme"]["blind_images"] is False
    assert metrics["mme"]["questions"] == 6  # one image (two questions) of each of the 3 subtasks
    for name in metrics:
        assert json.loads((out / name / "metrics.json").read_text())["benchmark"] == name


def test_one_process_writes_a_cells_evaluation_and_its_blind_control(tiny_backbones, tmp_path):
    model, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"])
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    write_release(tmp_path / "data" / "mme")
    with pytest.warns(UserWarning, match="lacks the subtask folders"):
        metrics = evaluate_cell(tmp_path / "model", {"mme": {"limit": 2, "max_new_tokens": 4}}, tmp_path / "data",
                                tmp_path / "eval", batch_size=4, blind_benchmarks=["mme"],
                                blind_out_root=tmp_path / "eval_blind")
    assert metrics["mme"]["blind_images"] is False and metrics["blind/mme"]["blind_images"] is True
    seeing = json.loads((tmp_path / "eval" / "mme" / "metrics.json").read_text())
    blind = json.loads((tmp_path / "eval_blind" / "mme" / "metrics.json").read_text())
    assert (seeing["blind_images"], blind["blind_images"]) == (False, True)
    assert seeing["questions"] == blind["questions"] == 6
    with pytest.raises(ValueError, match="blind_out_root"):
        evaluate_cell(tmp_path / "model", {"mme": {"limit": 2}}, tmp_path / "data", tmp_path / "x", batch_size=4,
                      blind_benchmarks=["mme"])


def write_metrics(root, cell, kind, bench, **values):
    path = root / cell / kind / bench / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def test_blind_control_table_from_metrics_files(tmp_path):
    # Table 1 itself is covered by tests/test_report_tables.py.
    cells = [Cell("2b", "clip", "pretrain"), Cell("2b", "clip", "skip")]
    for cell, acc in zip(cells, (0.8, 0.7), strict=True):
        write_metrics(tmp_path, cell.name, "eval", "pope", **{"split_mean/accuracy": acc, "split_mean/f1": acc - 0.1})
        write_metrics(tmp_path, cell.name, "eval_blind", "pope", **{"split_mean/accuracy": 0.5, "split_mean/f1": 0.6})
    blind = build_blind_control(cells, ["pope"], tmp_path)
    first = blind[(blind.cell == "2b_clip_pretrain") & (blind.metric == "pope_acc")].iloc[0]
    assert (first.seeing, first.blind) == (0.8, 0.5) and abs(first.gap - 0.3) < 1e-12


def dry_run_jobs(tmp_path, eval_overrides: dict) -> dict[str, int]:
    """Job counts per rule of a dry run of the toy study with ``eval`` updated."""
    cfg = yaml.safe_load((ROOT / "toy.yaml").read_text())
    cfg["eval"].update(eval_overrides)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "2"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    stats = run.stdout.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}


@pytest.mark.parametrize("one_job_per", ["benchmark", "cell"])
def test_evaluation_jobs_per_benchmark_or_per_cell(tmp_path, one_job_per):
    jobs = dry_run_jobs(tmp_path, {"one_job_per": one_job_per, "blind_control": ["pope", "mmvp"]})
    if one_job_per == "benchmark":
        assert jobs["evaluate_benchmark"] == 8 * (7 + 2)
    else:
        assert jobs["evaluate_cell"] == 8  # each also writes the cell's blind control
        assert "evaluate_benchmark" not in jobs
