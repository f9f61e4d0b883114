"""Diagnostic: does an LM read attributes from slots (toy/slots.py), and does a cell's connector make them?

Per type of one-word question (colour, size, left or right, where, count, shape, word), the share of
held-out questions whose first answer token is right, asked about a caption and about the scene's
slots (slot scenes wear free colours, so a shape's typical colour answers a colour question about
0.475 of the time). With ``--cell`` it also compares the cell's connector outputs with the slots its
own LM would read (mean cosine at the objects' cells, and the nearest colour/size/shape word), and
asks the cell's LM, after stage 2, the same questions about true slots:

    python tools/diag_toy_slots.py --lm /tmp/lm-slots
    python tools/diag_toy_slots.py --cell results/cells/2b_clip_pretrain/model
    python tools/diag_toy_slots.py --untrained /tmp/lm-slots models/toy-clip   # the connector at initialisation
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

import torch
from llava_gemma.toy import lookup, slots
from llava_gemma.toy import scenes as sc
from llava_gemma.toy.world import ToyWorldSpec, _jpeg
from PIL import Image

TYPES = (("large or small", "size"), ("left or on the right", "left/right"), ("Where is", "where"),
         ("How many", "count"), ("What color", "colour"), ("What shape", "shape"), ("word", "word"),
         ("Which", "which shape"))


def question_type(question: str) -> str:
    first = question.split("\n")[0]
    return next((name for pattern, name in TYPES if pattern in first), "other")


def accuracy_by_type(model, tokenizer, kind: str, n: int) -> dict[str, tuple[float, int]]:
    groups: dict[str, list[bool]] = {}
    for question, hit in lookup.first_token_hits(model, tokenizer, kind, n=n, seed=777):
        groups.setdefault(question_type(question), []).append(hit)
    return {t: (sum(v) / len(v), len(v)) for t, v in sorted(groups.items())}


def print_types(label: str, result: dict[str, tuple[float, int]]) -> None:
    print(f"{label:28s}" + "  ".join(f"{t} {a:.2f} ({k})" for t, (a, k) in result.items()), flush=True)


@torch.no_grad()
def connector_against_slots(model, processor, n_scenes: int = 300, seed: int = 5) -> dict[str, float]:
    """Mean cosine of the connector's output and the slot vector at each object's cell, and how often the
    colour/size/shape word whose embedding has the largest dot product with the output is the object's."""
    rng, spec, tokenizer = random.Random(seed), ToyWorldSpec(seed=0), processor.tokenizer
    scenes = [sc.recolour(sc.random_scene(rng), rng, lookup.FREE_COLOUR_PROB) for _ in range(n_scenes)]
    images = [Image.open(io.BytesIO(_jpeg(s, spec))).convert("RGB") for s in scenes]
    pixels = processor.image_processor(images, return_tensors="pt").pixel_values
    feats = model.get_image_features(pixel_values=pixels, vision_feature_layer=model.config.vision_feature_layer,
                                     vision_feature_select_strategy=model.config.vision_feature_select_strategy)
    feats = feats if isinstance(feats, torch.Tensor) else torch.stack(list(feats))
    table = model.get_input_embeddings()
    want = slots.slot_vectors(table, tokenizer, scenes)

    def words(vocab) -> torch.Tensor:
        return torch.stack([table(torch.tensor(tokenizer.encode(" " + w, add_special_tokens=False))).mean(0)
                            for w in vocab])

    vocabs = {"colour": list(sc.COLORS), "size": list(sc.SIZES), "shape": list(sc.SHAPES)}
    tables = {k: words(v) for k, v in vocabs.items()}
    cos, hits = [], {k: [] for k in vocabs}
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            out = feats[i, o.cell]
            cos.append(torch.nn.functional.cosine_similarity(out, want[i, o.cell], 0).item())
            for key, value in (("colour", o.color), ("size", o.size), ("shape", o.shape)):
                hits[key].append((tables[key] @ out).argmax().item() == vocabs[key].index(value))
    return {"cosine": sum(cos) / len(cos), **{f"nearest_{k}": sum(v) / len(v) for k, v in hits.items()},
            "output_norm": feats.norm(dim=-1).mean().item(),
            "slot_norm": want[want.norm(dim=-1) > 0].norm(dim=-1).mean().item()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lm", help="an LM folder")
    ap.add_argument("--cell", type=Path, help="a trained cell's model folder")
    ap.add_argument("--untrained", nargs=2, metavar=("LM", "TOWER"),
                    help="assemble a cell with a fresh connector (seed 0) and compare it with the slots only")
    ap.add_argument("-n", type=int, default=600, help="held-out questions per form")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.untrained:
        from llava_gemma.model.assemble import assemble_llava

        torch.manual_seed(0)
        model, processor = assemble_llava(args.untrained[0], args.untrained[1], torch.float32)
        print(" ".join(f"{k} {v:.3f}" for k, v in connector_against_slots(model, processor).items()))
        return
    if args.lm:
        from transformers import AutoTokenizer, GemmaForCausalLM

        model, tokenizer = GemmaForCausalLM.from_pretrained(args.lm), AutoTokenizer.from_pretrained(args.lm)
    elif args.cell:
        from llava_gemma.eval.run import load_cell

        model, processor = load_cell(args.cell)
        tokenizer = processor.tokenizer
        print(" ".join(f"{k} {v:.3f}" for k, v in connector_against_slots(model, processor).items()))
    else:
        ap.error("name --lm or --cell")
    print_types("about a caption", accuracy_by_type(model, tokenizer, "word", args.n))
    print_types("about the slots", accuracy_by_type(model, tokenizer, lookup.SLOT_PREFIX + "word", args.n))


if __name__ == "__main__":
    main()
