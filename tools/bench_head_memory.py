"""Benchmark: peak host memory of one training step's LM head and loss on CPU, before and after
train/supervised_loss.py, with Gemma 2B's head (hidden 2,048, vocabulary 256,000) at 2,048 tokens.

Before: HF's path, the head at every position (bf16 logits) and ``ForCausalLMLoss`` (fp32 upcast of
all of them, log-softmax, their gradient). After: the head and an fp32 cross-entropy at the
supervised positions only, in checkpointed chunks. Weights and hidden states are bf16, as the
study trains; stage 1 freezes the head (only the hidden states' gradient), stage 2 trains it (its
bf16 gradient is in both cases' figures).

How memory is measured: every case runs in a fresh Python process (one at a time), which builds
the head and the hidden states, reads its resident set (/proc/self/statm), runs one forward and
backward, and reads its peak resident set (``getrusage``'s ru_maxrss, the kernel's high-water
mark: it sees torch's allocations, which tracemalloc does not). The figure is peak minus the
resident set before the step: what the head and loss add. glibc serves allocations this large
with mmap and returns them on free, so the resident set follows live tensors.

Supervision profile (which positions carry a label), as ``llava-gemma estimate`` assumes without
the real data (analysis/planning/estimate.py WorkloadDefaults): stage 1 supervises 37 of a caption pair's
616 tokens (576 CLIP image tokens + 40 text), 6.0%; stage 2 120 of 876, 13.7%; ``--stage2-fraction``
tries a heavier one (long conversations supervise more). The real 665k mix was not at hand.

    python tools/bench_head_memory.py [--batch 2] [--tokens 2048] [--vocab 256000] [--hidden 2048]

``--scaled-model`` instead checks ``llava-gemma estimate``'s prediction (analysis/planning/step_memory.py:
activations plus head and loss) against one measured step of a scaled Gemma (width 512, 4 layers,
MLP 4,096, vocabulary 32,000; frozen weights and a trained input, as stage 1; bf16, SDPA with
the causal kernel), with and without gradient checkpointing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

PROFILE = {"stage1": 37 / 616, "stage2": 120 / 876}


def rss_bytes() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["MemAvailable"].split()[0]) * 1024


def one_case(case: str, stage: str, batch: int, tokens: int, vocab: int, hidden: int, fraction: float,
             chunk_rows: int) -> dict:
    import torch
    from llava_gemma.train.supervised_loss import IGNORE_INDEX, head_loss_sum, normalise
    from transformers.loss.loss_utils import ForCausalLMLoss

    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False, device="meta").to_empty(device="cpu").to(torch.bfloat16)
    torch.nn.init.normal_(head.weight, std=0.02)
    head.weight.requires_grad_(stage == "stage2")
    states = torch.randn(batch, tokens, hidden, dtype=torch.bfloat16).requires_grad_(True)
    labels = torch.full((batch, tokens), IGNORE_INDEX)
    supervised = round(fraction * tokens)
    labels[:, tokens - supervised:] = torch.randint(0, vocab, (batch, supervised))  # the answers end each row
    before_step = rss_bytes()
    start = time.time()
    if case == "before":
        logits = head(states)
        loss = ForCausalLMLoss(logits, labels, vocab)
        del logits  # Trainer.compute_loss keeps only the loss
    else:
        loss = normalise(*head_loss_sum(states, labels, head, chunk_rows=chunk_rows))
    loss.backward()
    seconds = time.time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"case": case, "stage": stage, "rss_before_step": before_step, "peak_rss": peak,
            "step_peak": peak - before_step, "seconds": seconds, "supervised_per_row": supervised,
            "loss": float(loss)}


SCALED = dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=128,
              intermediate_size=4096, vocab_size=32_000)


def scaled_case(checkpointing: bool, batch: int, tokens: int, fraction: float, chunk_rows: int) -> dict:
    import torch
    from llava_gemma.train.supervised_loss import IGNORE_INDEX, head_loss_sum, normalise
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(0)
    config = GemmaConfig(**SCALED, attn_implementation="sdpa")
    model = GemmaForCausalLM(config).to(torch.bfloat16).train()
    model.requires_grad_(False)  # stage 1: the LM frozen, the gradient flows to its input (the connector's output)
    if checkpointing:
        model.gradient_checkpointing_enable({"use_reentrant": False})
    embeds = torch.randn(batch, tokens, config.hidden_size, dtype=torch.bfloat16).requires_grad_(True)
    labels = torch.full((batch, tokens), IGNORE_INDEX)
    supervised = round(fraction * tokens)
    labels[:, tokens - supervised:] = torch.randint(0, config.vocab_size, (batch, supervised))
    before_step = rss_bytes()
    hidden = model.model(inputs_embeds=embeds).last_hidden_state  # no attention mask: SDPA's causal kernel
    loss = normalise(*head_loss_sum(hidden, labels, model.lm_head, chunk_rows=chunk_rows))
    del hidden
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"checkpointing": checkpointing, "step_peak": peak - before_step, "supervised_per_row": supervised}


def scaled_model(args, chunk: int, fraction: float) -> None:
    from llava_gemma.analysis.planning.step_memory import step_memory
    from transformers import GemmaConfig

    config = GemmaConfig(**SCALED)
    print(f"scaled Gemma {SCALED}, micro-batch {args.batch} x {args.tokens} tokens, supervised share {fraction:.3f}")
    print("| gradient checkpointing | predicted activations (GiB) | predicted head + loss | predicted total | "
          "measured step peak | measured / predicted |")
    print("|---|---:|---:|---:|---:|---:|")
    for checkpointing in (False, True):
        argv = [sys.executable, __file__, "--one", "scaled", "ckpt" if checkpointing else "full", "--batch",
                str(args.batch), "--tokens", str(args.tokens), "--chunk-rows", str(chunk),
                "--stage2-fraction", str(fraction)]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        measured = json.loads(done.stdout.strip().splitlines()[-1])["step_peak"]
        p = step_memory(config, micro_batch=args.batch, row_tokens=args.tokens, supervised_fraction=fraction,
                        checkpointing=checkpointing)
        predicted = p.total_gb * 1e9
        print(f"| {'on' if checkpointing else 'off'} | {p.activations_gb * 1e9 / 2**30:.3f} | "
              f"{p.head_loss_gb * 1e9 / 2**30:.3f} | {predicted / 2**30:.3f} | {measured / 2**30:.3f} | "
              f"{measured / predicted:.2f} |", flush=True)


def predicted_need(batch: int, tokens: int, vocab: int) -> int:
    """A bound of the before case (four fp32 copies of the logits and a bf16 one), to check the host first."""
    return 9 * 2 * batch * tokens * vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="micro-batch")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per row (data.max_length)")
    parser.add_argument("--vocab", type=int, default=256_000)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--chunk-rows", type=int, default=None, help="head rows per chunk (default: the module's)")
    parser.add_argument("--stage2-fraction", type=float, default=PROFILE["stage2"],
                        help="share of stage-2 positions supervised")
    parser.add_argument("--stages", nargs="+", default=["stage1", "stage2"], choices=["stage1", "stage2"])
    parser.add_argument("--scaled-model", action="store_true",
                        help="check the predicted activations + head/loss against a scaled Gemma's measured step")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "STAGE"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    from llava_gemma.train.supervised_loss import CHUNK_ROWS

    chunk = args.chunk_rows or CHUNK_ROWS
    fractions = {"stage1": PROFILE["stage1"], "stage2": args.stage2_fraction}
    if args.one and args.one[0] == "scaled":
        print(json.dumps(scaled_case(args.one[1] == "ckpt", args.batch, args.tokens, args.stage2_fraction, chunk)))
        return
    if args.scaled_model:
        scaled_model(args, chunk, args.stage2_fraction)
        return
    if args.one:
        case, stage = args.one
        print(json.dumps(one_case(case, stage, args.batch, args.tokens, args.vocab, args.hidden, fractions[stage],
                                  chunk)))
        return
    need = predicted_need(args.batch, args.tokens, args.vocab)
    if available_bytes() < need:
        sys.exit(f"the before case may need {need / 2**30:.1f} GiB and only {available_bytes() / 2**30:.1f} GiB are "
                 "available; wait for a quieter machine or lower --batch/--tokens/--vocab.")
    print(f"head {args.hidden} x {args.vocab} (bf16), micro-batch {args.batch} x {args.tokens} tokens, "
          f"chunks of {chunk} rows; supervised share: stage 1 {fractions['stage1']:.3f}, "
          f"stage 2 {fractions['stage2']:.3f}")
    print("| stage | case | supervised per row | step peak (GiB) | peak RSS (GiB) | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    results = {}
    for stage in args.stages:
        for case in ("before", "after"):
            argv = [sys.executable, __file__, "--one", case, stage, "--batch", str(args.batch), "--tokens",
                    str(args.tokens), "--vocab", str(args.vocab), "--hidden", str(args.hidden),
                    "--chunk-rows", str(chunk), "--stage2-fraction", str(args.stage2_fraction)]
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            r = results[stage, case] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {stage} | {case} | {r['supervised_per_row']} | {r['step_peak'] / 2**30:.2f} | "
                  f"{r['peak_rss'] / 2**30:.2f} | {r['seconds']:.1f} |", flush=True)
    for stage in args.stages:
        before, after = results[stage, "before"], results[stage, "after"]
        print(f"{stage}: {before['step_peak'] / after['step_peak']:.1f}x lower step peak "
              f"(loss before {before['loss']:.5f}, after {after['loss']:.5f})")


if __name__ == "__main__":
    main()
