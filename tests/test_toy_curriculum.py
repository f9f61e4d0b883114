"""The lettered-answer curriculum (toy/curriculum.py) and the tool that ships its LMs (issue 27)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from llava_gemma.toy import curriculum, lookup
from transformers import AutoTokenizer, GemmaForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from pretrain_toy_lms import letters_one  # noqa: E402

LM = ROOT / "models" / "toy-gemma-2b"
SHORT = ((4, {"pick": 0.5, "choice": 0.5}), (3, {"choice": 0.7, "verify": 0.3}))


def _trained(every: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model, tokenizer = GemmaForCausalLM.from_pretrained(LM), AutoTokenizer.from_pretrained(LM)
    seen: list[int] = []

    def evaluate(step: int, losses: list[float]) -> None:
        seen.append(step)
        lookup.first_token_accuracy(model, tokenizer, "choice", n=8)

    losses = curriculum.train_on_lookups(model, tokenizer, SHORT, seed=3, every=every, on_eval=evaluate)
    assert len(losses) == 7 and all(loss > 0 for loss in losses)
    assert seen == ([0, 2, 4, 6, 7] if every else [])
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_evaluating_between_steps_leaves_the_weights_unchanged():
    """tools/diag_toy_letters.py evaluates as it trains, tools/pretrain_toy_lms.py --letters does not:
    the same seed and phases give the same weights either way."""
    with_evals, without = _trained(every=2), _trained(every=0)
    assert with_evals.keys() == without.keys()
    assert all(torch.equal(with_evals[k], without[k]) for k in without)
    assert not torch.equal(without["model.embed_tokens.weight"],
                           GemmaForCausalLM.from_pretrained(LM).state_dict()["model.embed_tokens.weight"])


def test_parse_phase():
    assert curriculum.parse_phase("2500:pick=0.2,choice=0.5") == (2500, {"pick": 0.2, "choice": 0.5})
    assert curriculum.parse_phase("10:") == (10, {})
    assert sum(steps for steps, _ in curriculum.LETTERS) == 8000


def test_letters_tool_writes_a_loadable_folder_with_its_report_and_one_card_section(tmp_path):
    start = tmp_path / "start"
    shutil.copytree(LM, start)
    out = tmp_path / "out"
    letters = letters_one(start, out, seed=0, phases=SHORT, n_eval=8)
    assert letters["steps"] == 7 and set(curriculum.SCORED_KINDS) <= set(letters) | set(letters["before"])
    report = json.loads((out / "pretrain_report.json").read_text())
    assert report["lookup_accuracy"] == json.loads((LM / "pretrain_report.json").read_text())["lookup_accuracy"]
    assert report["letters"]["phases"] == [[4, {"pick": 0.5, "choice": 0.5}], [3, {"choice": 0.7, "verify": 0.3}]]
    GemmaForCausalLM.from_pretrained(out)  # plain transformers loads it
    AutoTokenizer.from_pretrained(out)
    # Continued again in place: the card keeps one "Lettered answers" section, with the new figures.
    letters_one(out, out, seed=1, phases=SHORT[:1], n_eval=8)
    card = (out / "README.md").read_text()
    assert card.count("## Lettered answers") == 1 and "seed 1: 4 steps at a peak learning rate of 0.0005" in card
    base_card = (LM / "README.md").read_text().split("\n## Lettered")[0].rstrip("\n")
    assert card.startswith(base_card.replace(f"# {LM.name}\n", "# out\n", 1))  # titled by its own folder
    assert f"Then continued from `{out}` by" in card
