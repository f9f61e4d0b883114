"""The toy LMs arrive able to look things up in their context, as real Gemma does (issue 15)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from llava_gemma.toy import lookup
from llava_gemma.toy import scenes as sc

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {level: ROOT / over["language_model"]["local"]
           for factor in yaml.safe_load((ROOT / "toy.yaml").read_text())["grid"]
           for level, over in factor["levels"].items() if "language_model" in over}


def test_existence_questions_are_balanced_per_shape():
    rng = random.Random(0)
    answers = Counter()
    for _ in range(4000):
        ex = lookup.existence_example(rng)
        shape = ex.prompt.split("Is there a ")[1].split(" in the image")[0]
        answers[shape, ex.answer] += 1
    for shape in sc.SHAPES:
        yes, no = answers[shape, "Yes"], answers[shape, "No"]
        assert abs(yes - no) < 0.2 * (yes + no), (shape, yes, no)


def test_held_out_captions_never_reach_pretraining():
    rng = random.Random(1)
    examples = lookup.draw_examples(rng, 2000)
    assert all(ex.caption in ex.prompt for ex in examples)
    assert not any(lookup.held_out(ex.caption) for ex in examples)
    rng = random.Random(2)
    scored = [lookup.existence_example(rng, heldout=True) for _ in range(50)]
    assert all(lookup.held_out(ex.caption) and ex.caption in ex.prompt for ex in scored)


def test_answer_loss_weighs_every_example_alike():
    # Two examples: one with a single labelled token, one with three; a wrong single answer must
    # count as much as the whole of the longer one.
    vocab = 5
    logits = torch.zeros(2, 4, vocab)
    labels = torch.tensor([[-100, -100, -100, 1], [-100, 2, 3, 4]])
    logits[0, 2, 1] = 10.0  # example 0 right
    for pos, tok in ((0, 2), (1, 3), (2, 4)):
        logits[1, pos, tok] = 10.0  # example 1 right
    assert lookup.answer_loss(logits, labels) < 1e-3
    logits[0, 2, 1] = -10.0  # example 0 wrong: half the examples are wrong
    loss = lookup.answer_loss(logits, labels)
    single = torch.nn.functional.cross_entropy(logits[0, 2:3], torch.tensor([1]))
    assert torch.isclose(loss, single / 2, atol=1e-4)


def test_shipped_toy_lms_share_one_tokenizer():
    """Data is tokenized once with tokenizer_from's tokenizer for both LMs, as Gemma 2B and 7B share one."""
    files = {level: (folder / "tokenizer.model").read_bytes() for level, folder in SHIPPED.items()}
    assert len(set(files.values())) == 1, f"the shipped LMs' tokenizers differ: {sorted(files)}"


@pytest.mark.parametrize("level", sorted(SHIPPED))
def test_shipped_toy_lm_answers_from_its_context(level):
    """Before any image is involved: balanced existence questions about held-out captions."""
    from transformers import AutoTokenizer, GemmaForCausalLM

    folder = SHIPPED[level]
    model = GemmaForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    accuracy = lookup.existence_accuracy(model, tokenizer, n=400, seed=777)
    assert accuracy >= 0.85, f"{folder}: look-up accuracy {accuracy:.3f}"


def test_pretraining_with_lookup_writes_a_report(tiny_backbones, tmp_path):
    from llava_gemma.toy.pretrain import pretrain_toy_language_model

    corpus = tiny_backbones["tokenizer"].parent / "corpus.txt"
    spec = dict(hidden_size=32, num_layers=1, num_heads=2, head_dim=16, intermediate_size=64, steps=3,
                lookup_batch_size=4, lm_batch_size=2)
    report = pretrain_toy_language_model(corpus, tiny_backbones["tokenizer"], tmp_path / "lm", spec)
    assert 0.0 <= report["lookup_accuracy"] <= 1.0 and report["final_lookup_loss"] > 0
    assert (tmp_path / "lm" / "model.safetensors").is_file()


def test_pretraining_continues_from_an_lm_folder(tiny_backbones, tmp_path):
    """``init`` (tools/pretrain_toy_lms.py --from) starts from the folder's weights, not a fresh model of the
    spec's shape: one step at learning rate 0 saves the folder's own weights."""
    import torch
    from llava_gemma.toy.pretrain import pretrain_toy_language_model
    from safetensors.torch import load_file

    corpus = tiny_backbones["tokenizer"].parent / "corpus.txt"
    spec = dict(hidden_size=8, num_layers=1, num_heads=1, head_dim=8, intermediate_size=8, steps=1, learning_rate=0.0,
                lookup_batch_size=0, lm_batch_size=2, init=str(tiny_backbones["lm"]))
    pretrain_toy_language_model(corpus, tiny_backbones["tokenizer"], tmp_path / "lm", spec)
    before, after = (load_file(p / "model.safetensors") for p in (tiny_backbones["lm"], tmp_path / "lm"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
