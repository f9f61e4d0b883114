"""Benchmark data preparation at the scale of llava_v1_5_mix665k (not a test: minutes, not seconds).

Writes a synthetic mix in the real schema (665,298 records by default, per-source record counts,
turn counts and text lengths modelled on the real mix, ~0.8 GB of JSON), whose records reference a
small pool of real JPEG files in the real folder layout, with a small share of every bad case the
filter handles. Then times ``prepare_dataset`` (filter + tokenize + write) and prints records/s,
wall and CPU time, and peak memory (this process, its workers, and their sum sampled over time).

    python tools/bench_prepare.py --workers 2                  # toy tokenizer, vocab 1000
    python tools/bench_prepare.py --vocab 32000 --records 100000
    python tools/bench_prepare.py --tokenizer data/models/2b   # any HF tokenizer folder
    python tools/bench_prepare.py --records 100000 --vocab 32000 --tokenizer-only  # tokens/s alone

Gemma's own tokenizer (256k vocabulary) cannot be fetched here; a larger vocabulary (``--vocab 32000``)
cuts the text into fewer, longer tokens, as Gemma's does, so its figure is the closer one. The
tokenizer figures are CPU seconds of one process (what each worker spends), tokens per second.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHORT = "\nAnswer the question using a single word or phrase."
LETTER = "\nAnswer with the option's letter from the given choices directly."
BOX_Q = "Please provide the bounding box coordinate of the region this sentence describes: "
REGION_Q = "Please provide a short description for this region: "
OCR_QS = ("Who wrote this book?", "What is the title of this book?", "What is the genre of this book?",
          "Is this a comedy book?", "Is this book related to History?", "What type of book is this?")
# name: (records, image folder or None, kind). The real mix's composition (LLaVA-1.5, Table 7).
SOURCES = {
    "llava_conv": (58_000, "coco/train2017", "conversation"),
    "llava_detail": (23_000, "coco/train2017", "detail"),
    "llava_reason": (77_000, "coco/train2017", "reasoning"),
    "vqav2": (83_000, "coco/train2017", "short"),
    "okvqa": (9_000, "coco/train2017", "short"),
    "aokvqa": (66_000, "coco/train2017", "choice"),
    "refcoco": (48_000, "coco/train2017", "boxes"),
    "gqa": (72_000, "gqa/images", "short_many"),
    "ocr_vqa": (80_000, "ocr_vqa/images", "ocr"),
    "textcaps": (22_000, "textvqa/train_images", "caption"),
    "vg": (86_298, "vg/VG_100K", "boxes"),
    "sharegpt": (40_000, None, "chat"),
}


class Words:
    """Zipf-distributed pseudo-English: a tokenizer does about the work it does on English."""

    def __init__(self, rng: np.random.Generator, n: int = 30_000):
        syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + \
                    [c + v + e for c in "bdklmnprst" for v in "aeiou" for e in "nrst"]
        seen: dict[str, None] = {}
        while len(seen) < n:
            seen["".join(rng.choice(syllables, size=rng.choice([1, 1, 1, 2, 2, 2, 3, 3])))] = None
        words = list(seen)
        words += [w + p for w in words[:3000] for p in (",", ".", "?")] + [str(i) for i in range(100)]
        weights = 1.0 / np.arange(1, len(words) + 1) ** 1.05
        self.words = np.array(words, dtype=object)
        self.cum = np.cumsum(weights) / weights.sum()
        self.rng = rng
        self.pool = self._draw(1 << 20)
        self.at = 0

    def _draw(self, k: int) -> list[str]:
        return self.words[np.searchsorted(self.cum, self.rng.random(k))].tolist()

    def text(self, lo: int, hi: int) -> str:
        n = int(self.rng.integers(lo, hi + 1))
        if self.at + n > len(self.pool):
            self.pool, self.at = self._draw(1 << 20), 0
        out = self.pool[self.at: self.at + n]
        self.at += n
        return " ".join(out).capitalize() + "."


def conversation(kind: str, w: Words, r: random.Random) -> list[tuple[str, str]]:
    """(question, answer) pairs of one record of this kind."""
    box = lambda: "[" + ", ".join(f"{r.random():.2f}" for _ in range(4)) + "]"  # noqa: E731
    if kind == "conversation":
        return [(w.text(6, 14), w.text(20, 70)) for _ in range(r.randint(2, 5))]
    if kind == "detail":
        return [(w.text(4, 10), w.text(60, 120))]
    if kind == "reasoning":
        return [(w.text(10, 22), w.text(40, 100))]
    if kind == "short":
        return [(w.text(4, 10) + SHORT, w.text(1, 2)) for _ in range(r.randint(2, 9))]
    if kind == "short_many":
        return [(w.text(5, 12) + SHORT, w.text(1, 2)) for _ in range(r.randint(4, 20))]
    if kind == "choice":
        opts = "\n".join(f"{c}. {w.text(1, 3)}" for c in "ABCD")
        return [(f"{w.text(6, 14)}\n{opts}{LETTER}", r.choice("ABCD")) for _ in range(r.randint(1, 2))]
    if kind == "boxes":
        return [(BOX_Q + w.text(2, 6), box()) if r.random() < 0.5 else (REGION_Q + box(), w.text(2, 6))
                for _ in range(r.randint(3, 12))]
    if kind == "ocr":
        return [(r.choice(OCR_QS), w.text(1, 8)) for _ in range(r.randint(4, 6))]
    if kind == "caption":
        return [("Provide a one-sentence caption for the provided image.", w.text(8, 20))]
    return [(w.text(8, 60), w.text(40, 180)) for _ in range(r.randint(1, 4))]  # sharegpt


def make_record(name: str, index: int, folder: str | None, kind: str, w: Words, r: random.Random,
                pool: int) -> dict:
    pairs = conversation(kind, w, r)
    turns = []
    for i, (q, a) in enumerate(pairs):
        if i == 0 and folder:
            q = f"<image>\n{q}" if r.random() < 0.7 else f"{q}\n<image>"  # both placements occur upstream
        turns += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    record = {"id": f"{name}-{index}", "conversations": turns}
    if folder:
        record["image"] = f"{folder}/{r.randrange(pool):012d}.jpg"
    return record


BAD_IMAGES = {"missing": "image_missing", "truncated": "image_truncated", "empty": "image_empty",
              "gif": "converted", "png": "converted"}


def write_images(root: Path, pool: int, seed: int) -> dict[str, list[str]]:
    """``pool`` photo-like JPEGs per folder, plus one file of every bad kind per folder."""
    rng = np.random.default_rng(seed)
    bad: dict[str, list[str]] = {}
    for folder in sorted({f for _, f, _ in SOURCES.values() if f}):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(pool):
            h, wd = int(rng.integers(360, 641)), 640
            y, x = np.mgrid[0:h, 0:wd]
            base = np.stack([x * 255 / wd, y * 255 / h, (x + y) * 127 / (wd + h)], -1)
            arr = (base + rng.normal(0, 12, (h, wd, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / folder / f"{i:012d}.jpg", quality=88)
        sample = (root / folder / f"{0:012d}.jpg").read_bytes()
        (root / folder / "truncated.jpg").write_bytes(sample[: len(sample) // 2])
        (root / folder / "empty.jpg").write_bytes(b"")
        gif = io.BytesIO()
        Image.open(root / folder / f"{1:012d}.jpg").convert("P").save(gif, "GIF")
        (root / folder / "gif.jpg").write_bytes(gif.getvalue())
        Image.open(root / folder / f"{2:012d}.jpg").save(root / folder / "png.jpg", "PNG")
        bad[folder] = [f"{folder}/{kind}.jpg" for kind in BAD_IMAGES]
    return bad


def write_mix(path: Path, image_root: Path, *, records: int, pool: int, bad_rate: float, seed: int) -> dict:
    r = random.Random(seed)
    w = Words(np.random.default_rng(seed))
    bad_images = write_images(image_root, pool, seed)
    scale = records / sum(n for n, _, _ in SOURCES.values())
    plan = [name for name, (n, _, _) in SOURCES.items() for _ in range(round(n * scale))]
    r.shuffle(plan)  # the real mix is shuffled across sources
    injected: dict[str, int] = {}
    written: list[dict] = []
    with path.open("w") as f:
        f.write("[\n")
        for index, name in enumerate(plan):
            _, folder, kind = SOURCES[name]
            record = make_record(name, index, folder, kind, w, r, pool)
            if r.random() < bad_rate:
                record, what = spoil(record, folder, bad_images, written, w, r)
                injected[what] = injected.get(what, 0) + 1
            if len(written) < 1000 and isinstance(record, dict):
                written.append(record)
            f.write(("" if index == 0 else ",\n") + json.dumps(record))
        f.write("\n]\n")
    return {"records": len(plan), "bytes": path.stat().st_size, "injected": dict(sorted(injected.items()))}


def spoil(record: dict, folder: str | None, bad_images: dict, earlier: list, w: Words,
          r: random.Random) -> tuple[dict, str]:
    """One of the bad cases the filter must count (or repair)."""
    turns = record["conversations"]
    what = r.choice(["duplicate", "bad_image", "roles", "empty", "no_image_token", "two_image_tokens",
                     "too_long", "not_a_record"])
    if what == "duplicate" and earlier:
        return dict(r.choice(earlier), id=record["id"]), what
    if what == "bad_image" and folder:
        image = r.choice(bad_images[folder])
        return {**record, "image": image}, "image_" + image.rsplit("/", 1)[1][:-4]
    if what == "roles":
        turns[1]["from"] = "human"
    elif what == "empty":
        turns[-1]["value"] = " "
    elif what == "no_image_token" and folder:
        turns[0]["value"] = turns[0]["value"].replace("<image>", "")
    elif what == "two_image_tokens" and folder:
        turns[-1]["value"] += " <image>"
    elif what == "too_long":
        turns[-1]["value"] = w.text(3000, 3500)
    elif what == "not_a_record":
        return ["not", "a", "record"], what
    else:
        return record, "none"
    return record, what


class PeakMemory:
    """Peaks of the summed RSS (every 0.25 s) and PSS (shared pages counted once; every 5 s) of this
    process and its children."""

    def __init__(self):
        self.peak = self.peak_pss = 0
        self.stop = threading.Event()
        try:
            import psutil

            self.me = psutil.Process()
        except ImportError:
            self.me = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        ticks = 0
        while not self.stop.is_set():
            try:
                procs = [self.me, *self.me.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
                ticks += 1
                if ticks % 20 == 0:  # PSS reads smaps (15 ms a process): rarely, or it costs a core's tenth
                    self.peak_pss = max(self.peak_pss, sum(p.memory_full_info().pss for p in procs))
            except Exception:  # a child exiting between listing and reading
                pass
            self.stop.wait(0.25)

    def __enter__(self):
        if self.me is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=665_298)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=1000, help="toy tokenizer vocabulary size")
    p.add_argument("--tokenizer", help="an HF tokenizer folder instead of a toy one")
    p.add_argument("--pool", type=int, default=100, help="distinct real images per image folder")
    p.add_argument("--bad-rate", type=float, default=0.004, help="share of records spoiled")
    p.add_argument("--image-check", default="decode", choices=["decode", "header"])
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--image-tokens", type=int, default=576)
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_prepare"))
    p.add_argument("--regenerate", action="store_true", help="write the synthetic mix again")
    p.add_argument("--tokenizer-only", action="store_true", help="only measure the tokenizer's speed")
    a = p.parse_args(argv)

    from llava_gemma.data.prepare import TooManyDropped, prepare_dataset
    from llava_gemma.model.assemble import prepare_tokenizer
    from llava_gemma.toy.tokenizer import train_toy_tokenizer

    raw = a.work / f"raw_{a.records}"
    records = raw / "llava_v1_5_mix665k.json"
    if a.regenerate or not records.exists():
        shutil.rmtree(raw, ignore_errors=True)
        raw.mkdir(parents=True)
        t = time.monotonic()
        info = write_mix(records, raw / "images", records=a.records, pool=a.pool, bad_rate=a.bad_rate, seed=0)
        (raw / "info.json").write_text(json.dumps(info))
        print(f"generated in {time.monotonic() - t:.0f} s", file=sys.stderr)
    info = json.loads((raw / "info.json").read_text())
    if a.tokenizer:
        tok_dir = Path(a.tokenizer)
    else:
        tok_dir = a.work / f"tokenizer_{a.vocab}"
        if not (tok_dir / "tokenizer.json").exists():
            with records.open() as f:
                lines = [next(f) for _ in range(20_000)]
            train_toy_tokenizer(lines, tok_dir, vocab_size=a.vocab)
    tokenizer = prepare_tokenizer(tok_dir)
    if a.tokenizer_only:
        print(json.dumps({"tokenizer": str(tok_dir), "vocab": len(tokenizer), **tokenizer_speed(tokenizer, records)},
                         indent=1))
        return 0
    out = a.work / "prepared"
    shutil.rmtree(out, ignore_errors=True)

    t0, c0, m0 = time.monotonic(), _cpu(), _cpu(children=False)
    with PeakMemory() as mem:
        try:
            report = prepare_dataset(records, raw / "images", tokenizer, out, fmt="gemma",
                                     max_length=a.max_length, image_tokens=a.image_tokens, default_source="other",
                                     max_drop_fraction=0.05, workers=a.workers, image_check=a.image_check)
        except TooManyDropped as err:  # still a timing: report it and say so
            print(f"stage would fail: {err}", file=sys.stderr)
            report = json.loads((out / "filter_report.rejected.json").read_text())
    wall, cpu, cpu_main = time.monotonic() - t0, _cpu() - c0, _cpu(children=False) - m0
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(out / "data.parquet").metadata
    tokens = int(pq.read_table(out / "data.parquet", columns=["length"]).column("length").to_numpy().sum())
    lost = {s: {k: v for k, v in st["dropped"].items()} for s, st in report["sources"].items() if st["dropped"]}
    result = {
        "records": report["total"], "kept": report["kept"], "json_bytes": info["bytes"],
        "tokenizer": str(tok_dir), "vocab": len(tokenizer), "workers": a.workers, "cpus": os.cpu_count(),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cpu_main_s": round(cpu_main, 1),
        "records_per_s": round(report["total"] / wall),
        "tokens_in_kept_rows": tokens, "parquet_bytes": (out / "data.parquet").stat().st_size,
        "row_groups": meta.num_row_groups,
        "peak_rss_main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "peak_rss_largest_worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024,
        "peak_rss_sum_sampled_mib": mem.peak // (1 << 20) if mem.peak else None,
        "peak_pss_sum_sampled_mib": mem.peak_pss // (1 << 20) if mem.peak_pss else None,
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "injected": info["injected"], "dropped": lost, "images": report["images"],
    }
    # Last: its memory must count neither in the peaks above nor in workers forked from this process.
    result["tokenizer_speed"] = tokenizer_speed(tokenizer, records)
    print(json.dumps(result, indent=1))
    return 0


def tokenizer_speed(tokenizer, records: Path, n: int = 20_000) -> dict:
    """Tokens per CPU second on the first ``n`` conversations: encoding alone, and with the label masking."""
    from llava_gemma.train.masking import encode_many, tokenize_many

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread, as in a preparation worker
    convs, texts = [], []
    with records.open() as f:
        for line in f:
            record = json.loads(line.rstrip(",\n")) if line.startswith("{") else None
            if record is None or record.get("conversations") is None:
                continue
            turns = record["conversations"]
            if all(isinstance(t.get("value"), str) and t["value"].strip() for t in turns) and \
                    [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2) and turns:
                convs.append(turns)
                texts.append("".join(t["value"] for t in turns))
            if len(convs) == n:
                break
    t = time.process_time()
    ids = encode_many(tokenizer, texts, add_special_tokens=False)
    encode_s = time.process_time() - t
    t = time.process_time()
    samples = tokenize_many(convs, tokenizer, "gemma")
    masked_s = time.process_time() - t
    tokens = sum(map(len, ids))
    masked_tokens = sum(len(s.input_ids) for s in samples if not isinstance(s, ValueError))
    return {"conversations": len(convs), "chars_per_token": round(sum(map(len, texts)) / tokens, 2),
            "encode_tokens_per_cpu_s": round(tokens / encode_s),
            "masked_tokens_per_cpu_s": round(masked_tokens / masked_s),
            "masking_mismatches": sum(isinstance(s, ValueError) for s in samples)}


def _cpu(children: bool = True) -> float:
    """CPU seconds of this process (and of its finished children): what an idle machine would need."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + (kids.ru_utime + kids.ru_stime if children else 0.0)


if __name__ == "__main__":
    sys.exit(main())
