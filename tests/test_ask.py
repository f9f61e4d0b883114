"""`llava-gemma ask` and docs/pipeline.md's plain-transformers snippet give a tiny cell's same greedy answer; every CLI
command documents itself and its options."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
from llava_gemma.cli import build_parser, main
from llava_gemma.eval.ask import question_text
from llava_gemma.model.assemble import assemble_llava
from PIL import Image

from .conftest import draw_scene

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["clip", "dinov2"])
def cell(request, tiny_backbones, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny assembled cell saved as a cell's model folder, and a non-square image (so padding matters)."""
    root = tmp_path_factory.mktemp(f"ask_{request.param}")
    model, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones[request.param])
    model.save_pretrained(root / "model", safe_serialization=True)
    processor.save_pretrained(root / "model")
    wide = Image.new("RGB", (64, 40), (200, 200, 200))
    wide.paste(draw_scene("red", 40), (12, 0))
    wide.save(root / "photo.png")
    return root / "model", root / "photo.png"


def readme_snippet() -> str:
    page = (ROOT / "docs" / "pipeline.md").read_text()
    section = page.split("## Asking a cell a question", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_ask_prints_the_same_answer_as_the_readme_snippet(cell, capsys):
    model_dir, image = cell
    assert main(["ask", str(model_dir), str(image), "Is there a dog in the image?", "--suffix", "short",
                 "--max-new-tokens", "8", "--device", "cpu"]) == 0
    answer = capsys.readouterr().out.strip()

    code = readme_snippet()
    assert 'model_dir, image_path = "results/cells/2b_clip_pretrain/model", "photo.jpg"' in code
    code = code.replace('"results/cells/2b_clip_pretrain/model", "photo.jpg"', f"{str(model_dir)!r}, {str(image)!r}")
    code = code.replace("max_new_tokens=128", "max_new_tokens=8")
    code += "\nimport sys\nassert not any(m.startswith('llava_gemma') for m in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == answer
    assert "<end_of_turn>" not in answer


def test_ask_answers_as_the_benchmark_runner_does(cell):
    from llava_gemma.eval.ask import ask
    from llava_gemma.eval.benchmarks.base import Question
    from llava_gemma.eval.generate import generate_answers
    from llava_gemma.eval.run import load_cell

    model_dir, image = cell
    question = Question("q1", image, question_text("Is there a circle in the image?", "short"), "yes")
    model, processor = load_cell(model_dir, "cpu")
    (expected,) = generate_answers(model, processor, [question], batch_size=1, max_new_tokens=8)
    assert ask(model_dir, image, "Is there a circle in the image?", suffix="short", max_new_tokens=8,
               device="cpu") == expected


def test_ask_text_only_question(cell, capsys):
    model_dir, _ = cell
    assert main(["ask", str(model_dir), "What is a circle?", "--max-new-tokens", "4", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.endswith("\n")


def test_ask_names_what_is_wrong(tmp_path, cell, capsys):
    model_dir, _ = cell
    assert main(["ask", str(tmp_path), "x.jpg", "What?"]) == 1
    assert "is not a saved cell" in capsys.readouterr().err
    assert main(["ask", str(model_dir), str(tmp_path / "missing.jpg"), "What?"]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert main(["ask", str(model_dir), str(tmp_path / "broken.jpg"), "What?", "--device", "cpu"]) == 1
    assert "cannot be read" in capsys.readouterr().err


def test_suffixes_are_the_benchmarks_instructions():
    assert question_text("Is there a cat?", "short") == \
        "Is there a cat?\nAnswer the question using a single word or phrase."
    assert question_text("Which?\nA. x\nB. y", "letter").endswith(
        "\nAnswer with the option's letter from the given choices directly.")
    assert question_text("Why?", None) == "Why?"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_has_a_description_and_documented_options():
    commands = subcommands()
    assert {"ask", "model-card", "train", "evaluate-cell", "estimate"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description and "\n" not in parser.description, name
        undocumented = [a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction) and not a.help]
        assert not undocumented, f"{name}: options without help: {undocumented}"


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_help_of_every_command_shows_its_description(name):
    done = subprocess.run([sys.executable, "-m", "llava_gemma", name, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    description = subcommands()[name].description
    assert " ".join(description.split()[:6]) in " ".join(done.stdout.split())
