"""Diagnostic: can a linear read-out find which shapes a toy scene holds in a tower's features?

Prints, per shape, the balanced accuracy of a logistic read-out of "is there a <shape>?" from the
tower's patch features (their mean, and all of them) and from the raw pixels, on held-out toy
scenes (``llava_gemma.toy.readout``). Usage (a shipped tower, or one of a finished toy run):

    python tools/probe_tower.py --tower models/toy-clip

``--attributes`` instead reads each object's colour, shape and size from the one patch of its grid
cell (``attribute_readout``): whether the image token carries what a colour or size question needs.
"""

from __future__ import annotations

import argparse

from llava_gemma.toy import scenes as sc
from llava_gemma.toy.readout import attribute_readout, presence_readout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tower", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--attributes", action="store_true", help="colour, shape and size from each object's patch")
    args = ap.parse_args()
    if args.attributes:
        result = attribute_readout(args.tower, args.seed)
        print(" ".join(f"{k} {v:.3f}" for k, v in result.items()))
        return
    result = presence_readout(args.tower, args.seed, per_shape=True)
    for key, name in (("mean", "mean of patches"), ("all", "all patches"), ("pixels", "raw pixels")):
        shapes = " ".join(f"{s} {a:.2f}" for s, a in zip(sc.SHAPES, result[key + "_shapes"]))
        print(f"{name:16s} mean {result[key]:.3f}  ({shapes})")


if __name__ == "__main__":
    main()
