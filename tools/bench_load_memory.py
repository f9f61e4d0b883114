"""Peak host memory per rank while 2 ranks assemble a LLaVA whose LM has about 1B parameters.

Three ways of loading, each with 2 processes at once (as 2 ranks of one training job do):

- ``fp32``: the LM loaded in fp32 (what train/run.py did before: master weights, cast by DeepSpeed later);
- ``bf16``: the LM loaded in the training precision (train/run.py's ``load_dtype``);
- ``zero3``: bf16 with the ZeRO-3 training arguments built first, so from_pretrained partitions each
  weight across the 2 ranks while it loads (train/run.py's order).

The stand-in: a Gemma-architecture LM (hidden 2048, 16 layers, MLP 8192, vocabulary 32,000: about
1.0B parameters) saved in bf16 safetensors, and the tiny toy CLIP tower (the tower is not the point).
Weights are zeros: memory does not depend on their values. Figures are ru_maxrss of each rank
(peak resident set, after every weight the rank holds has been read), in GB, beside the resident
size right after the python/torch/transformers imports.

    OMP_NUM_THREADS=1 nice -n 10 python tools/bench_load_memory.py [--workdir /tmp/bench_load]

Needs about 2 GB of disk for the stand-in and, at its peak (fp32), about 10 GB of free memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

MODES = ("fp32", "bf16", "zero3")
LM = dict(hidden_size=2048, num_hidden_layers=16, intermediate_size=8192, num_attention_heads=8,
          num_key_value_heads=1, head_dim=256, vocab_size=32000)


def build_stand_in(root: Path) -> tuple[Path, Path]:
    """A ~1B Gemma LM (zeros, bf16) with the toy tokenizer, and a tiny CLIP tower."""
    import torch
    from transformers import GemmaConfig, GemmaForCausalLM

    lm_dir, tower_dir = root / "lm", root / "tower"
    if (lm_dir / "config.json").is_file() and (tower_dir / "config.json").is_file():
        return lm_dir, tower_dir
    tokenizer_dir = _toy_tokenizer(root)
    with torch.device("meta"):
        model = GemmaForCausalLM(GemmaConfig(**LM))
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    for p in model.parameters():
        p.data.zero_()
    model.save_pretrained(lm_dir, max_shard_size="1GB")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(lm_dir)
    _tiny_tower(root, tokenizer_dir, tower_dir)
    return lm_dir, tower_dir


def _toy_tokenizer(root: Path) -> Path:
    from llava_gemma.toy.tokenizer import train_toy_tokenizer

    lines = [f"a {c} circle." for c in ("red", "blue", "green")] * 5 + ["Is there a circle? Yes No"]
    train_toy_tokenizer(lines, root / "tokenizer", vocab_size=300)
    return root / "tokenizer"


def _tiny_tower(root: Path, tokenizer_dir: Path, tower_dir: Path) -> None:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, projection_dim=32)
    CLIPVisionModel(config).save_pretrained(tower_dir)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tower_dir)


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KB on Linux


def worker(mode: str, lm_dir: Path, tower_dir: Path, work: Path) -> dict:
    import torch
    import transformers  # noqa: F401
    from llava_gemma.model.assemble import assemble_llava, parameter_counts

    baseline = peak_gb()
    if mode == "zero3":
        from llava_gemma.study.config import StageConfig
        from llava_gemma.train.run import start_distributed
        from llava_gemma.train.trainer_setup import training_arguments

        stage = StageConfig(learning_rate=2e-5, global_batch_size=2, per_device_batch_size=1, epochs=1,
                            warmup_ratio=0.0, weight_decay=0.0, lr_scheduler="cosine", zero_stage=3)
        args = training_arguments(stage, work, backend="cpu", precision="bf16", world_size=2, seed=0, save_steps=0,
                                  stage_name="stage2")
        start_distributed(args)
    dtype = torch.float32 if mode == "fp32" else torch.bfloat16
    model, _ = assemble_llava(lm_dir, tower_dir, dtype)
    # Touch every weight this rank holds: a tensor read lazily from a memory-mapped file is resident
    # only once used, and training uses them all.
    with torch.no_grad():
        for p in model.parameters():
            p.sum()
    counts = parameter_counts(model)
    return {"mode": mode, "rank": int(os.environ["RANK"]), "baseline_gb": round(baseline, 2),
            "peak_gb": round(peak_gb(), 2), "lm_parameters": counts["language_model"]}


def run_mode(mode: str, lm_dir: Path, tower_dir: Path, workdir: Path) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", mode, "--workdir", str(workdir)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=1800)
        if p.returncode:
            raise RuntimeError(f"{mode}: a rank failed (exit {p.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return sorted(results, key=lambda r: r["rank"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/bench_load_memory")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    a = parser.parse_args()
    workdir = Path(a.workdir)
    if a.worker:
        result = worker(a.worker, workdir / "lm", workdir / "tower", workdir / "work")
        print(json.dumps(result), flush=True)
        return
    if a.build:
        build_stand_in(workdir)
        return
    workdir.mkdir(parents=True, exist_ok=True)
    # In a child process: Linux carries the peak resident size over fork and exec, so the parent of
    # the ranks must stay small for their figures to be theirs.
    subprocess.run([sys.executable, __file__, "--build", "--workdir", str(workdir)], check=True)
    lm_dir, tower_dir = workdir / "lm", workdir / "tower"
    print("| load | rank | imports GB | peak GB | LM parameters |\n|---|---:|---:|---:|---:|")
    for mode in a.modes:
        for r in run_mode(mode, lm_dir, tower_dir, workdir):
            print(f"| {mode} | {r['rank']} | {r['baseline_gb']:.2f} | {r['peak_gb']:.2f} | {r['lm_parameters']:,} |",
                  flush=True)


if __name__ == "__main__":
    main()
