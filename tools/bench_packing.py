"""Benchmark: packed training against longest-row padding and HPU length buckets.

Part 1 (padding): for the stage-2 mix (665k) and the stage-1 captions (595K) it orders the samples as
the training sampler does (train/sampler.py: grouped by modality and length for stage 2, the
longest-first shuffle for stage 1), cuts the paper's optimizer steps for ``--world`` devices, and
counts the token slots the devices process when each micro-batch is padded to its longest row
(cpu, cuda), to the smallest length bucket (hpu today), or packed (train/packing.py: each step's
samples in rows of ``--row-length`` tokens, ``--rows`` rows per micro-batch, every rank the same
number of micro-batches). It prints the padded share, the distinct token shapes (HPU graphs of the
language model) and, for packing, the range of images per micro-batch (the tower's batch sizes).

Lengths come from the prepared files when they exist (``--instruct``, ``--pretrain``); otherwise from
synthetic profiles, and the output says which: the 665k profile is the mix of tools/bench_prepare.py
prepared with its 32,000-piece tokenizer (the profile of bench_padding's 31.3%; pass its
``data.parquet``), the 595K profile a model of LLaVA-CC3M-Pretrain-595K under the Gemma chat
template (576 CLIP image tokens, 24 template tokens, BLIP captions of 13 tokens on average).

Part 2 (``--toy ROOT``): trains the toy study's stage 2 (toy.yaml's settings, the 2B LM and CLIP, a
fresh connector) on CPU twice per seed with HPU-style static shapes: batches padded to length buckets,
then packed rows, and prints real tokens per second and the final loss of each. ROOT holds the toy's
``data/prepared/instruct`` and ``data/raw`` (``snakemake data/prepared/instruct/data.parquet --cores 2
--configfile toy.yaml`` in a clone makes them).

    python tools/bench_packing.py --instruct /tmp/bench_prepare/prepared/data.parquet
    python tools/bench_packing.py --skip-padding --toy /tmp/toy --seeds 42 43
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The paper's stages (config.yaml): global batch, largest micro-batch per device, order.
STAGES = {"stage2": dict(global_batch=128, micro=16, grouped=True),
          "stage1": dict(global_batch=256, micro=32, grouped=False)}


def synthetic_595k(n: int = 595_375, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 lengths: 576 image tokens + 24 template tokens (bos, turn markers, one of LLaVA's brief
    caption instructions, 20 to 28 tokens) + a caption (negative binomial, mean 13 tokens, at least 3)."""
    rng = np.random.default_rng(seed)
    caption = np.maximum(rng.negative_binomial(8, 8 / (8 + 13), n), 3)
    return 576 + rng.integers(20, 29, n) + caption, np.ones(n, dtype=bool)


def profile(path: Path | None, image_tokens: int, stage: str) -> tuple[np.ndarray, np.ndarray, str]:
    if path is not None and path.exists():
        sys.path.insert(0, str(REPO / "tools"))
        from bench_padding import sample_lengths

        lengths, has_image = sample_lengths(path, image_tokens)
        return lengths, has_image, f"prepared file {path}"
    if stage == "stage1":
        lengths, has_image = synthetic_595k()
        return lengths, has_image, "synthetic 595K profile (no prepared file given)"
    raise SystemExit("the 665k profile needs a prepared file: run tools/bench_prepare.py --vocab 32000 and pass "
                     "its prepared/data.parquet as --instruct.")


def padding_rows(lengths: np.ndarray, has_image: np.ndarray, *, global_batch: int, micro: int, grouped: bool,
                 world: int, buckets: list[int], row_length: int, rows: int, seed: int,
                 group_steps: int = 1) -> list[dict]:
    """The three ways of analysis/planning/padding.py for one stage on ``world`` devices, and the
    floor no packing of the same steps into one shape can go below."""
    from llava_gemma.analysis.planning.padding import packed_padding, packing_floor, stage_order, unpacked_padding
    from llava_gemma.study.config import StageConfig

    stage = StageConfig(learning_rate=1.0, global_batch_size=global_batch, per_device_batch_size=micro, epochs=1,
                        warmup_ratio=0, weight_decay=0, lr_scheduler="cosine", zero_stage=2,
                        group_by_modality_length=grouped, length_group_steps=group_steps)
    order, micro = stage_order(lengths, has_image, stage, world, seed)
    ways = [unpacked_padding(lengths, order, micro, None), unpacked_padding(lengths, order, micro, buckets),
            packed_padding(lengths, has_image, order, global_batch, world, row_length, rows),
            packing_floor(lengths, order, global_batch, world, row_length, rows)]
    return [{"padding": w.way, "tokens": w.slots, "pad_share": w.share, "shapes": w.shapes,
             "images": f"{w.images[0]}..{w.images[1]}" if w.images else ""} for w in ways]


def print_padding(args) -> None:
    for stage, path in (("stage2", args.instruct), ("stage1", args.pretrain)):
        lengths, has_image, source = profile(path, args.image_tokens, stage)
        spec = STAGES[stage]
        print(f"\n{stage}: {source}: {len(lengths):,} samples, lengths {lengths.min()}..{lengths.max()} "
              f"(mean {lengths.mean():.0f}), global batch {spec['global_batch']}, micro-batch {spec['micro']}, "
              f"{'grouped' if spec['grouped'] else 'longest-first shuffle'}")
        for world, row_length, group_steps in itertools.product(
                args.world, args.row_length[stage], args.group_steps if spec["grouped"] else [1]):
            t = time.monotonic()
            rows = padding_rows(lengths, has_image, global_batch=spec["global_batch"], micro=spec["micro"],
                                grouped=spec["grouped"], world=world, buckets=args.buckets,
                                row_length=row_length, rows=args.rows, seed=args.seed, group_steps=group_steps)
            order = (f"length_group_steps {group_steps}" + (" (LLaVA-1.5)" if group_steps == 1 else "")
                     if spec["grouped"] else "shuffle")
            print(f"  {world} device(s), {order}, packed rows of {row_length} "
                  f"({time.monotonic() - t:.0f} s to pack)")
            print(f"    {'padding':<18}{'token slots':>16}{'pad share':>11}{'shapes':>8}  images/micro-batch")
            for r in rows:
                print(f"    {r['padding']:<18}{r['tokens']:>16,}{r['pad_share']:>10.1%}{r['shapes']:>8}"
                      f"  {r['images']}")


def toy_stage2(root: Path, out: Path, *, packed: bool, seed: int, rows: int, buckets: list[int],
               pack_length: int | None = None) -> dict:
    """One toy stage-2 run (a skip cell: fresh connector) on CPU with HPU-style static shapes."""
    import yaml
    from llava_gemma.study.config import StageConfig
    from llava_gemma.train import backends, run

    toy = yaml.safe_load((REPO / "toy.yaml").read_text())
    settings = dict(toy["train"]["stage2"])
    max_length = toy["data"]["max_length"]
    if packed:
        settings.update(packing=True, pack_length=pack_length or max_length, pack_rows=rows)
    # The cpu backend pads like hpu for this benchmark only: buckets (unpacked) or one row shape (packed).
    backends.TRAITS["cpu"] = replace(backends.TRAITS["cpu"], pads_to_buckets=True)  # the dict run.py reads
    raw = root / "data" / "raw" / "llava_instruct"
    images = next(p for p in raw.iterdir() if p.is_dir())
    return run.run_stage("stage2", StageConfig(**settings), lm_path=REPO / "models" / "toy-gemma-2b",
                         tower_path=REPO / "models" / "toy-clip", data_dir=root / "data" / "prepared" / "instruct",
                         image_root=images, out_dir=out / "out", work_dir=out / "work", backend="cpu",
                         precision="fp32", seed=seed, save_steps=0, length_buckets=buckets)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruct", type=Path, help="prepared stage-2 data.parquet (665k)")
    parser.add_argument("--pretrain", type=Path, help="prepared stage-1 data.parquet (595K); else synthetic")
    parser.add_argument("--image-tokens", type=int, default=576, help="CLIP-L/14 at 336 px")
    parser.add_argument("--buckets", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--world", type=int, nargs="+", default=[1, 8], help="devices (the paper: 8)")
    parser.add_argument("--stage2-row-length", type=int, nargs="+", default=[2048])
    parser.add_argument("--stage1-row-length", type=int, nargs="+", default=[2048])
    parser.add_argument("--rows", type=int, default=1, help="packed rows per micro-batch")
    parser.add_argument("--group-steps", type=int, nargs="+", default=[1, 50],
                        help="stage 2's length_group_steps: 1 is LLaVA-1.5's order, 50 the length-sorted one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-padding", action="store_true")
    parser.add_argument("--toy", type=Path, help="toy study root with data/prepared/instruct (part 2)")
    parser.add_argument("--toy-rows", type=int, default=2, help="packed rows per micro-batch in the toy run")
    parser.add_argument("--toy-buckets", type=int, nargs="+", default=[128, 256, 384])
    parser.add_argument("--toy-pack-length", type=int, help="packed row length (default: toy.yaml's data.max_length)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_packing"))
    args = parser.parse_args()
    args.row_length = {"stage2": args.stage2_row_length, "stage1": args.stage1_row_length}
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not args.skip_padding:
        print_padding(args)
    if args.toy:
        print(f"\ntoy stage 2 on CPU, hpu-style static shapes (buckets {args.toy_buckets} | packed rows of "
              f"{args.toy_pack_length or 'data.max_length'} tokens, {args.toy_rows} per micro-batch)")
        print(f"{'run':<22}{'steps':>6}{'wall s':>8}{'real tokens':>12}{'pad share':>10}{'real tok/s':>11}"
              f"{'final loss':>11}")
        speeds: dict[str, list[float]] = {}
        for seed in args.seeds:
            for packed in (False, True):
                name = f"{'packed' if packed else 'buckets'} seed {seed}"
                m = toy_stage2(args.toy, args.work / name.replace(" ", "_"), packed=packed, seed=seed,
                               rows=args.toy_rows, buckets=args.toy_buckets, pack_length=args.toy_pack_length)
                speed = m["tokens_real"] / m["wall_seconds"]
                speeds.setdefault("packed" if packed else "buckets", []).append(speed)
                print(f"{name:<22}{m['steps']:>6}{m['wall_seconds']:>8.1f}{m['tokens_real']:>12,}"
                      f"{m['padding_fraction']:>9.1%}{speed:>11.0f}{m['final_loss']:>11.4f}", flush=True)
        ratio = np.mean(speeds["packed"]) / np.mean(speeds["buckets"])
        print(f"packed / buckets real tokens per second: {ratio:.2f}x; load average now "
              f"{os.getloadavg()[0]:.1f}")
    print(json.dumps({"load_average_end": os.getloadavg()}))


if __name__ == "__main__":
    main()
