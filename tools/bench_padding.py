"""Benchmark: padded tokens per epoch with three ways of padding a training batch, for three orders.

For a prepared dataset (``data/prepared/<dataset>/data.parquet``) this orders the samples as the
Trainer's uniform random sampler does, and as stage 2's ``group_by_modality_length`` sampler does
(train/sampler.py) on ``--world`` devices, in LLaVA-1.5's order (``length_group_steps`` 1: random
steps, micro-batches of even work) and in the length-sorted one (``length_group_steps`` 50), cuts
them into micro-batches, and counts the tokens the device
processes when every batch is padded to a fixed length (data.max_length, what static shapes would
need without buckets), to the smallest length bucket that holds it (what the hpu backend does),
or to its longest sample (what cpu and cuda do). It prints real and padded tokens, the share of
padding, the saving of buckets over the fixed length, and how many distinct batch shapes (HPU
graphs to compile) each way produces. Usage:

    python tools/bench_padding.py --data data/prepared/instruct/data.parquet --batch-size 16 \\
        --buckets 256 512 1024 2048 --pad-to 2048 [--image-tokens 576] [--world 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from llava_gemma.train.dataset import image_rows, padded_width
from llava_gemma.train.sampler import length_grouped_order


def sample_lengths(parquet: Path, image_tokens: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Tokens per sample after ``<image>`` expansion: as prepared (``length``), or for a tower with
    ``image_tokens`` image tokens (the prepared length counts the largest tower's); and which samples
    have an image."""
    table = pq.read_table(parquet, columns=["input_ids", "image", "length"])
    has_image = image_rows(table.column("image"))
    if image_tokens is None:
        return table.column("length").to_numpy().astype(np.int64), has_image
    ids = pc.list_value_length(table.column("input_ids")).to_numpy().astype(np.int64)
    return ids + has_image * (image_tokens - 1), has_image


def batch_widths(lengths: np.ndarray, batch_size: int, seed: int, has_image: np.ndarray | None = None,
                 world: int = 1, group_steps: int = 1) -> list[np.ndarray]:
    """The micro-batches' sample lengths: uniform order, or grouped when ``has_image`` is given, in
    steps of ``world`` micro-batches."""
    if has_image is None:
        order = np.random.default_rng(seed).permutation(len(lengths))
    else:
        order = length_grouped_order(lengths, has_image, batch_size, seed, step_batches=world,
                                     group_steps=group_steps)
    return [lengths[order[i:i + batch_size]] for i in range(0, len(order), batch_size)]


def padding_table(batches: list[np.ndarray], buckets: list[int], pad_to: int) -> list[dict]:
    real = int(sum(b.sum() for b in batches))
    ways = {
        f"to {pad_to}": [pad_to for _ in batches],
        "to bucket": [padded_width(int(b.max()), buckets) for b in batches],
        "to longest": [int(b.max()) for b in batches],
    }
    rows = []
    for name, widths in ways.items():
        total = int(sum(w * len(b) for w, b in zip(widths, batches)))
        rows.append({"padding": name, "tokens": total, "real": real, "pad": total - real,
                     "pad_share": (total - real) / total, "shapes": len(set(widths))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared/instruct/data.parquet"))
    parser.add_argument("--batch-size", type=int, default=16, help="micro-batch per device (stage 2 of the paper)")
    parser.add_argument("--buckets", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--pad-to", type=int, default=2048, help="the fixed length (data.max_length)")
    parser.add_argument("--image-tokens", type=int, help="image tokens of the tower (default: as prepared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", type=int, default=8, help="devices: a grouped step is world x batch samples")
    args = parser.parse_args()

    lengths, has_image = sample_lengths(args.data, args.image_tokens)
    if lengths.max() > args.pad_to:
        parser.error(f"the longest sample has {lengths.max()} tokens, more than --pad-to {args.pad_to}")
    print(f"{args.data}: {len(lengths)} samples, lengths {lengths.min()}..{lengths.max()} "
          f"(median {int(np.median(lengths))}), batches of {args.batch_size}, buckets {sorted(args.buckets)}")
    orders = (("uniform shuffle", None, 1), ("group_by_modality_length, LLaVA-1.5's order", has_image, 1),
              ("group_by_modality_length, length_group_steps 50", has_image, 50))
    for order, grouping, group_steps in orders:
        batches = batch_widths(lengths, args.batch_size, args.seed, grouping, args.world, group_steps)
        rows = padding_table(batches, sorted(args.buckets), args.pad_to)
        print(f"\n{order}: {len(batches)} batches")
        print(f"{'padding':<12}{'tokens':>14}{'padding tokens':>16}{'pad share':>11}{'shapes':>8}")
        for r in rows:
            print(f"{r['padding']:<12}{r['tokens']:>14,}{r['pad']:>16,}{r['pad_share']:>10.1%}{r['shapes']:>8}")
        fixed, bucket, longest = (r["tokens"] for r in rows)
        print(f"buckets process {1 - bucket / fixed:.1%} fewer tokens than padding to {args.pad_to}, "
              f"and {bucket / longest - 1:.1%} more than padding to the longest sample.")

if __name__ == "__main__":
    main()
