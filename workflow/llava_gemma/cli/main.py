"""``llava-gemma``: the commands the Snakemake rules run, one per kind of job.

Structured settings arrive as JSON (``--settings``) from the rule's ``params``, so Snakemake
reruns a job when its part of the config changes. Errors a user can cause end in one sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from llava_gemma.errors import UserError
from llava_gemma.cli.rehearse import add_commands as add_rehearsal_commands


def _json(text: str) -> dict:
    return json.loads(text) if text else {}


def cmd_toy_world(a) -> dict:
    from llava_gemma.toy.tokenizer import train_toy_tokenizer
    from llava_gemma.toy.world import ToyWorldSpec, generate_toy_world

    settings = _json(a.settings)
    vocab = settings.pop("vocab_size", 1000)
    counts = generate_toy_world(Path(a.out), ToyWorldSpec(**settings))
    corpus = (Path(a.out) / "toy_text" / "corpus.txt").read_text().splitlines()
    train_toy_tokenizer(corpus, Path(a.out) / "toy_text" / "tokenizer", vocab_size=vocab)
    return counts


def cmd_pretrain_toy_lm(a) -> dict:
    from llava_gemma.toy.pretrain import pretrain_toy_language_model

    raw = Path(a.raw)
    return pretrain_toy_language_model(raw / "toy_text" / "corpus.txt", raw / "toy_text" / "tokenizer",
                                       Path(a.out), _json(a.settings), seed=a.seed)


def cmd_pretrain_toy_tower(a) -> dict:
    from llava_gemma.toy.towers import pretrain_toy_vision_tower

    return pretrain_toy_vision_tower(Path(a.raw) / "toy_text" / "tokenizer", Path(a.out), _json(a.settings),
                                     seed=a.seed)


def cmd_download(a) -> dict:
    from llava_gemma.data.download import download_hub_file, download_hub_folder, download_url
    from llava_gemma.data.sources import commit_for

    src = _json(a.settings)
    if "hub" in src:  # at the commit the preflight resolved (data/raw/sources.json), or the pin itself
        kind = src.get("repo_type", "dataset")
        revision = commit_for(Path(a.sources) if a.sources else None, src["hub"], kind, src.get("revision"))
        if "folder" in src:
            download_hub_folder(src["hub"], src["folder"], Path(a.out), kind, revision=revision)
        else:
            download_hub_file(src["hub"], src["file"], Path(a.out), kind, revision=revision, sha256=src.get("sha256"))
        return {"path": a.out, "hub": src["hub"], "commit": revision}
    download_url(src["url"], Path(a.out), sha256=src.get("sha256"), size=src.get("size"))
    return {"path": a.out}


def cmd_download_model(a) -> dict:
    from llava_gemma.data.download import download_model
    from llava_gemma.data.sources import commit_for

    src = _json(a.settings)
    revision = commit_for(Path(a.sources) if a.sources else None, a.repo, "model", src.get("revision"))
    download_model(a.repo, Path(a.out), revision=revision)
    return {"repo": a.repo, "commit": revision}


def cmd_check_sources(a) -> dict:
    from llava_gemma.data.sources import check_sources

    s = _json(a.settings)
    return check_sources(s["sources"], allow_unpinned=s.get("allow_unpinned", False), out=Path(a.out))


def cmd_install_model(a) -> dict:
    from llava_gemma.data.local_model import install_local_model

    return install_local_model(Path(a.folder), Path(a.out))


def cmd_extract(a) -> dict:
    from llava_gemma.data.extract import extract_zip

    spec = _json(a.settings)
    n = extract_zip(Path(a.archive), Path(a.into), strip=spec.get("strip", 0), members=spec.get("members"),
                    expect=spec.get("expect"))
    result = {"archive": a.archive, "into": a.into, "files": n}
    Path(a.out).write_text(json.dumps(result) + "\n")
    return result


def cmd_fetch_ocr_vqa(a) -> dict:
    from llava_gemma.data.ocr_vqa import FetchBudget, fetch_ocr_vqa_covers

    s = _json(a.settings)
    names = {"budget_seconds": "seconds", "probe": "probe", "max_failure_rate": "max_failure_rate"}
    budget = FetchBudget(**{field: s[key] for key, field in names.items() if key in s})
    return fetch_ocr_vqa_covers(Path(a.mix), Path(a.into), Path(a.out), source=s["source"],
                                dataset_json=Path(a.dataset_json) if a.dataset_json else None,
                                threads=s.get("threads", 16), timeout=s.get("timeout", 30.0),
                                retries=s.get("retries", 3), budget=budget)


def cmd_prepare(a) -> dict:
    from llava_gemma.data.prepare import prepare_dataset
    from llava_gemma.data.vocabulary import write_vocabulary
    from llava_gemma.model.assemble import build_processor, image_token_count, prepare_tokenizer
    from llava_gemma.study.backbone_sources import check_role

    # A hub backbone is first read here (validation cannot read the hub): a wrong kind is one sentence.
    for folder, kind in [(a.tokenizer, "language_model"), *((t, "vision_tower") for t in a.towers)]:
        check_role(Path(folder), kind, f"the {kind} of level {Path(folder).name!r}", str(folder))
    tokenizer = prepare_tokenizer(a.tokenizer)
    # Length filtering counts the image tokens of the hungriest tower in the grid.
    image_tokens = max(image_token_count(build_processor(t, prepare_tokenizer(a.tokenizer))) for t in a.towers)
    s = _json(a.settings)
    report = prepare_dataset(Path(a.records), Path(a.image_root), tokenizer, Path(a.out), fmt=a.format,
                             max_length=s["max_length"], image_tokens=image_tokens, default_source=a.source,
                             max_drop_fraction=s["max_drop_fraction"], image_check=s.get("image_check", "decode"),
                             workers=a.workers)
    write_vocabulary(Path(a.out), tokenizer, a.tokenizer)  # training checks its LM against it
    return report


def cmd_train(a) -> dict:
    from llava_gemma.study.config import StageConfig
    from llava_gemma.train.run import run_stage

    s = _json(a.settings)
    recipe = {k: s[k] for k in ("connector", "stage2_trains", "instruct_sources") if k in s}
    return run_stage(a.stage, StageConfig(**s["stage"]), **recipe, lm_path=Path(a.lm), tower_path=Path(a.tower),
                     data_dir=Path(a.data), image_root=Path(a.image_root), out_dir=Path(a.out),
                     work_dir=Path(a.work), backend=s["backend"], precision=s["precision"], seed=s["seed"],
                     save_steps=s["save_steps"], connector_from=Path(a.connector) if a.connector else None,
                     length_buckets=s.get("length_buckets"), gradient_checkpointing=s.get("gradient_checkpointing"),
                     peak_tflops=s.get("peak_tflops"), pad_to=s.get("pad_to"))


def cmd_launch(a) -> dict:
    from llava_gemma.train.launch import launch

    def run_in_process(argv: list[str]) -> dict:
        inner = build_parser().parse_args(argv)
        return inner.fn(inner)

    return launch(a.argv, tasks=a.tasks, nodes=a.nodes, backend=a.backend, cpus_per_task=a.cpus_per_task,
                  launcher=a.launcher, slurm_task=a.slurm_task, run_in_process=run_in_process)


def cmd_evaluate(a) -> dict:
    from llava_gemma.eval.run import evaluate_benchmark, split_settings

    s = _json(a.settings)
    return evaluate_benchmark(Path(a.model), a.benchmark, Path(a.data), Path(a.out), batch_size=s.pop("batch_size"),
                              seed=s.pop("seed", 0), blind=a.blind, work_dir=Path(a.work) if a.work else None,
                              **split_settings(s))


def cmd_device_answers(a) -> dict:
    from llava_gemma.eval.device_check import device_answers

    return device_answers(Path(a.model), a.benchmark, Path(a.data), Path(a.out), device=a.device,
                          questions=a.questions)


def cmd_compare_answers(a) -> dict:
    from llava_gemma.eval.device_check import compare_answers

    return compare_answers(Path(a.device_answers), Path(a.cpu_answers), Path(a.out))


def cmd_evaluate_cell(a) -> dict:
    from llava_gemma.eval.run import evaluate_cell

    s = _json(a.settings)
    metrics = evaluate_cell(Path(a.model), s["benchmarks"], Path(a.data_root), Path(a.out),
                            batch_size=s["batch_size"], seed=s.get("seed", 0),
                            blind_benchmarks=s.get("blind_control", ()),
                            blind_out_root=Path(a.blind_out) if a.blind_out else None,
                            work_root=Path(a.work) if a.work else None)
    return {name: {"questions": m.get("questions"), "wall_seconds": m["wall_seconds"]} for name, m in metrics.items()}


def _write_report_table(a, build, write) -> dict:
    s = _json(a.settings)
    table = build(_cells(a), s["benchmarks"], Path(a.cells_dir))
    write(table, Path(a.out))
    print(table.to_string(index=False))
    return {"rows": len(table)}


def cmd_report(a) -> dict:
    from llava_gemma.analysis.paper import build_comparison, write_comparison
    from llava_gemma.analysis.table1 import build_table1, write_table1

    def write(table, out_dir):
        write_table1(table, out_dir)
        # Beside the published Table 1: cells matched by checkpoint (hub id) or, for toy grids, level name.
        write_comparison(build_comparison(table, _json(a.settings).get("sources", {})), out_dir)

    return _write_report_table(a, build_table1, write)


def cmd_blind_report(a) -> dict:
    from llava_gemma.analysis.blind_control import build_blind_control, write_blind_control

    return _write_report_table(a, build_blind_control, write_blind_control)


def cmd_effects(a) -> dict:
    from llava_gemma.analysis.effects import build_effects, write_effects
    from llava_gemma.analysis.run_effects import build_run_effects

    s = _json(a.settings)
    if "factors" not in s:  # paper-grid cell names only: the three factors, one run per cell
        return _write_report_table(a, build_effects, write_effects)
    effects = build_run_effects(_cells(a), s["benchmarks"], Path(a.cells_dir), dict(s["factors"]),
                                s.get("design", "full"))
    write_effects(effects, Path(a.out))
    print(effects.to_string(index=False))
    return {"rows": len(effects)}


def _cells(a) -> list:
    """The settings' runs: as the workflow writes them (dicts), or paper-grid cell names."""
    from llava_gemma.study.config import Cell

    return [Cell.from_dict(c) if isinstance(c, dict) else Cell.parse(c) for c in _json(a.settings)["cells"]]


def cmd_speed(a) -> dict:
    from llava_gemma.analysis.speed import build_speed, relative_speed, write_speed

    speed = build_speed(_cells(a), _json(a.settings)["benchmarks"], Path(a.results_dir))
    write_speed(speed, Path(a.out))
    print(speed.to_string(index=False))
    return {"relative": relative_speed(speed).to_dict(orient="records")}


def cmd_loss_plot(a) -> dict:
    from llava_gemma.analysis.training import write_loss_plot

    return write_loss_plot(_cells(a), Path(a.results_dir), Path(a.out))


def cmd_data_filter(a) -> dict:
    from llava_gemma.analysis.table1 import to_markdown
    from llava_gemma.analysis.training import data_filter_summary

    summary = data_filter_summary(Path(a.prepared_dir))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "data_filter.csv", index=False, float_format="%.4f")
    (out / "data_filter.md").write_text(to_markdown(summary))
    return {"rows": len(summary)}


def cmd_relevancy(a) -> dict:
    from llava_gemma.analysis.relevancy import compute_cell_relevancy, maps_to_json

    maps = compute_cell_relevancy(Path(a.model), _json(a.settings)["examples"], Path(a.data))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(maps_to_json(maps)) + "\n")
    return {"examples": [f"{m.benchmark}/{m.qid}: {m.answer_token!r}" for m in maps]}


def cmd_relevancy_figure(a) -> dict:
    from llava_gemma.analysis.relevancy_figure import write_relevancy_figure

    return write_relevancy_figure([Path(m) for m in a.maps], Path(a.out))


def cmd_estimate(a) -> dict | None:
    from llava_gemma.analysis.estimate import run_estimate

    estimate = run_estimate(a.config, devices=a.devices, peak_tflops=a.peak_tflops, mfu=a.mfu,
                            prepared=[Path(x) for x in a.prepared], backend=a.backend,
                            device_memory_gb=a.device_memory_gb)
    if a.json:
        return estimate
    print(estimate["markdown"])
    return None  # the Markdown table is the output


def cmd_design(a) -> dict:
    from llava_gemma.analysis.design_page import write_design

    return write_design(_json(a.settings), Path(a.out))


def cmd_plan(a) -> None:
    from llava_gemma.analysis.plan import run_plan

    print(run_plan(a.configfile, devices=a.devices, peak_tflops=a.peak_tflops, mfu=a.mfu,
                   prepared=[Path(x) for x in a.prepared], seed_sd=a.seed_sd, questions=a.questions,
                   pilot=Path(a.pilot) if a.pilot else None, target=a.target_effect, backend=a.backend,
                   device_memory_gb=a.device_memory_gb))
    return None  # the Markdown table is the output


def cmd_describe_study(a) -> dict:
    from llava_gemma.analysis.study_info import write_study_metadata

    return write_study_metadata(_json(a.settings), Path(a.repo), Path(a.out))


def cmd_model_card(a) -> dict:
    from llava_gemma.analysis.model_card import write_model_card

    return write_model_card(_json(a.settings), Path(a.out), Path(a.eval_dir) if a.eval_dir else None)


def cmd_ask(a) -> None:
    from llava_gemma.eval.ask import ask

    answer = ask(Path(a.model), Path(a.image) if a.image else None, a.question, suffix=a.suffix,
                 max_new_tokens=a.max_new_tokens, device=a.device)
    print(answer)
    if not answer:
        print("(empty answer: the model ended its turn at once)", file=sys.stderr)
    return None  # the answer is the output


# Help of the path and value options several commands share (argparse shows it under each command).
ARG_HELP = {
    "out": "where the command writes its output (file or folder, as the rule declares it)",
    "raw": "the raw data folder (data/raw)",
    "repo": "hub repository id of the model to download (describe-study: the pipeline's checkout)",
    "archive": "the zip archive to unpack",
    "folder": "a checkpoint folder written by save_pretrained (config.json, *.safetensors, tokenizer)",
    "into": "folder the archive's files go to",
    "mix": "LLaVA's llava_v1_5_mix665k.json (the OCR-VQA records it names)",
    "records": "the dataset's records (LLaVA JSON: chat.json or llava_v1_5_mix665k.json)",
    "image_root": "folder the records' image paths are relative to",
    "tokenizer": "folder of the LM whose tokenizer prepares the data",
    "format": "conversation format: plain (stage 1 captions) or gemma (chat turns)",
    "source": "source name for records that do not name one (filter report counts)",
    "stage": "stage1 (connector only) or stage2 (connector + LM)",
    "lm": "folder of the Gemma language model",
    "tower": "folder of the vision tower (CLIP or DINOv2)",
    "data": "prepared dataset folder (train) or the benchmark's raw data folder (evaluate, relevancy)",
    "work": "folder for resumable checkpoints, beside the declared outputs",
    "connector": "stage-1 connector (connector.safetensors) to start stage 2 from; omitted: a fresh connector",
    "model": "a cell's model folder (results/cells/<cell>/model)",
    "benchmark": "benchmark name (pope, gqa, mme, mmvet, vqav2, vqav2_testdev, mmvp, scienceqa_img)",
    "data_root": "folder holding one raw data folder per benchmark (data/raw/benchmarks)",
    "cells_dir": "folder of the cells' results (results/cells)",
    "results_dir": "the results folder (results)",
    "prepared_dir": "folder of the prepared datasets (data/prepared)",
}

# One line per command: what it does (the first line of `llava-gemma <command> --help`).
DESCRIPTIONS = {
    "toy-world": "generate the toy world (scenes, captions, instructions, benchmarks) and its tokenizer",
    "pretrain-toy-lm": "pretrain a tiny Gemma-architecture LM on the toy world's text",
    "pretrain-toy-tower": "pretrain a tiny CLIP or DINOv2 tower on fresh toy scenes (toy/towers.py)",
    "download": "download one raw file (hub file or URL), resumable and checksummed",
    "download-model": "download a model repository from the hub into a folder",
    "check-sources": "before any download: refuse unpinned or gated-without-HF_TOKEN hub sources, record their commits",
    "install-model": "copy a checkpoint folder on disk (a `local:` source) into a folder, as a download would",
    "extract": "unpack a zip archive and write a marker file listing what was unpacked",
    "fetch-ocr-vqa": "fetch OCR-VQA's book covers (or audit a mirror's) and report the dead ones",
    "prepare": "filter and tokenize a training set once into Parquet, with a filter report",
    "train": "train stage 1 (connector) or stage 2 (connector + LM) of one cell",
    "launch": "start one process per device (torchrun, deepspeed or srun), then the command after `--` in each",
    "evaluate": "answer one benchmark with one cell and score it (samples.jsonl, metrics.json)",
    "evaluate-cell": "answer every configured benchmark (and the blind-image control) with one cell",
    "report": "Table 1 (csv, md, tex) and its comparison with the published table",
    "blind-report": "the blind-image control table: each cell's scores with and without images",
    "effects": "fit the factor-effect models on per-question records and plot them",
    "speed": "the speed table and figure from training and evaluation metrics",
    "loss-plot": "plot the training loss curves of every stage-1 run and cell",
    "data-filter": "summarise what data preparation dropped, by reason",
    "relevancy": "compute one cell's relevancy maps for the configured examples",
    "relevancy-figure": "draw every cell's relevancy maps into one figure",
    "design": "write the study's design (cells, replicates, aliasing, resolution) as Markdown (design.md)",
    "plan": "every cell and replicate of a study with its predicted training FLOPs and hours, and the total",
    "describe-study": "the report's study metadata: config files, commit, library versions, date",
    "model-card": "write a cell's model card (README.md in the hub's format), with metrics when given",
    "ask": "ask a cell a question about an image and print its greedy answer",
    "device-answers": "greedy fp32 answers of a benchmark's first questions on one device (the smoke run's check)",
    "compare-answers": "fail, naming the questions, unless the device's answers equal the CPU's",
    "estimate": "training FLOPs and hours of every real cell, and the MFU the paper's wall times imply "
                "(Markdown table)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llava-gemma", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")

    def command(name, fn):
        sp = sub.add_parser(name, help=DESCRIPTIONS[name], description=DESCRIPTIONS[name])
        sp.set_defaults(fn=fn)
        return sp

    def add(name, fn, *args):
        sp = command(name, fn)
        sp.add_argument("--settings", default="", help="JSON settings from the rule's params")
        for arg in args:
            sp.add_argument(f"--{arg}", required=arg not in ("connector",), default=None, help=ARG_HELP[arg])
        return sp

    add("toy-world", cmd_toy_world, "out")
    add("pretrain-toy-lm", cmd_pretrain_toy_lm, "raw", "out").add_argument(
        "--seed", type=int, default=0, help="random seed")
    add("pretrain-toy-tower", cmd_pretrain_toy_tower, "raw", "out").add_argument(
        "--seed", type=int, default=0, help="random seed")
    sources_help = "data/raw/sources.json: the commit the preflight resolved for each hub source"
    add("download", cmd_download, "out").add_argument("--sources", default=None, help=sources_help)
    add("download-model", cmd_download_model, "repo", "out").add_argument("--sources", default=None,
                                                                          help=sources_help)
    add("check-sources", cmd_check_sources, "out")
    add("install-model", cmd_install_model, "folder", "out")
    add("extract", cmd_extract, "archive", "into", "out")
    add("fetch-ocr-vqa", cmd_fetch_ocr_vqa, "mix", "into", "out").add_argument(
        "--dataset_json", default=None, help="OCR-VQA's dataset.json (source: urls)")
    prepare = add("prepare", cmd_prepare, "records", "image_root", "tokenizer", "format", "source", "out")
    prepare.add_argument("--towers", nargs="+", required=True,
                         help="every tower folder of the grid (length filtering counts the most image tokens)")
    prepare.add_argument("--workers", type=int, default=None, help="processes (default: the usable CPUs)")
    add("train", cmd_train, "stage", "lm", "tower", "data", "image_root", "out", "work", "connector")
    launch = command("launch", cmd_launch)
    launch.add_argument("--tasks", type=int, default=1, help="ranks in all, one per device (the rule's tasks)")
    launch.add_argument("--nodes", type=int, default=1, help="nodes the ranks spread over (the rule's nodes)")
    launch.add_argument("--backend", default="auto", help="train.backend; hpu launches through DeepSpeed")
    launch.add_argument("--cpus_per_task", type=int, default=None, help="CPU threads per rank")
    launch.add_argument("--launcher", default="auto", help="auto | single | torchrun | deepspeed | srun")
    launch.add_argument("--slurm_task", action="store_true",
                        help="internal: this process is one srun task; map SLURM's variables to torch's")
    launch.add_argument("argv", nargs=argparse.REMAINDER, help="-- <llava-gemma command> [arguments]")
    work_help = "folder of partial answers a killed run resumes from (beside the declared outputs)"
    evaluate = add("evaluate", cmd_evaluate, "model", "benchmark", "data", "out")
    evaluate.add_argument("--blind", action="store_true",
                          help="replace every image by a blank one of the tower's mean colour")
    evaluate.add_argument("--work", default=None, help=work_help + "; default <out>/partial")
    evaluate_cell = add("evaluate-cell", cmd_evaluate_cell, "model", "data_root", "out")
    evaluate_cell.add_argument(
        "--blind_out", help="where the blind-image control of the settings' blind_control benchmarks goes")
    evaluate_cell.add_argument("--work", default=None, help=work_help + "; default <out>/<benchmark>/partial")
    answers = add("device-answers", cmd_device_answers, "model", "benchmark", "data", "out")
    answers.add_argument("--device", default=None, help="cpu, cuda or hpu (default: the evaluation device)")
    answers.add_argument("--questions", type=int, default=20, help="how many of the benchmark's questions")
    compare = command("compare-answers", cmd_compare_answers)
    for name in ("device_answers", "cpu_answers", "out"):
        compare.add_argument(f"--{name}", required=True, help="JSON written by device-answers" if name != "out"
                             else "where the comparison goes (JSON)")
    add("report", cmd_report, "cells_dir", "out")
    add("blind-report", cmd_blind_report, "cells_dir", "out")
    add("effects", cmd_effects, "cells_dir", "out")
    add("speed", cmd_speed, "results_dir", "out")
    add("loss-plot", cmd_loss_plot, "results_dir", "out")
    add("data-filter", cmd_data_filter, "prepared_dir", "out")
    add("relevancy", cmd_relevancy, "model", "data", "out")
    add("relevancy-figure", cmd_relevancy_figure, "out").add_argument(
        "--maps", nargs="+", required=True, help="the cells' relevancy JSON files (results/report/relevancy/*.json)")
    add("design", cmd_design, "out")
    add("describe-study", cmd_describe_study, "repo", "out")
    add("model-card", cmd_model_card, "out").add_argument(
        "--eval_dir", default=None, help="the cell's eval folder (results/cells/<cell>/eval): add its metrics")
    ask = command("ask", cmd_ask)
    ask.add_argument("model", help=ARG_HELP["model"])
    ask.add_argument("image", nargs="?", default=None, help="the image (JPEG, PNG); leave out for a text-only question")
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--suffix", choices=["short", "letter"], default=None,
                     help="append a benchmark's answer instruction: short (\"Answer the question using a single word "
                          "or phrase.\") or letter (\"Answer with the option's letter ...\")")
    ask.add_argument("--max-new-tokens", type=int, default=128, help="answer length cap in tokens (LLaVA's 128)")
    ask.add_argument("--device", default=None, help="cpu, cuda or hpu (default: the accelerator if there is one)")
    add_rehearsal_commands(sub)  # rehearse build|serve|run: the paper's sources on loopback
    estimate = command("estimate", cmd_estimate)
    estimate.add_argument("--config", default="config.yaml", help="study config (default: config.yaml)")
    estimate.add_argument("--devices", type=int, default=None, help="devices (default: the config's train.devices)")
    estimate.add_argument("--peak-tflops", type=float, default=None,
                          help="bf16 dense peak per device (default: train.peak_tflops, else Gaudi 2's 432)")
    estimate.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation to predict hours at")
    estimate.add_argument("--prepared", nargs="*", default=[],
                          help="data/prepared/{pretrain,instruct}/data.parquet: real token counts replace the "
                               "documented estimates")
    estimate.add_argument("--backend", default="hpu", choices=("cpu", "cuda", "hpu"),
                          help="whose ZeRO stages, gradient checkpointing and device the memory table uses "
                               "(default hpu, as the study ran)")
    estimate.add_argument("--device-memory-gb", type=float, default=None,
                          help="memory per device, GB (default: train.device_memory_gb, else H100 80, Gaudi 2 96)")
    estimate.add_argument("--json", action="store_true", help="print every number as JSON instead of the table")
    plan = command("plan", cmd_plan)
    plan.add_argument("--configfile", nargs="+", default=["config.yaml"],
                      help="study config(s), merged in order as snakemake --configfile does (default: config.yaml)")
    plan.add_argument("--devices", type=int, default=None, help="devices (default: the config's train.devices)")
    plan.add_argument("--peak-tflops", type=float, default=None,
                      help="dense peak per device (default: train.peak_tflops, a known device's, else Gaudi 2's)")
    plan.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation to predict hours at")
    plan.add_argument("--prepared", nargs="*", default=[],
                      help="data/prepared/{pretrain,instruct}/data.parquet: real token counts replace the estimates")
    plan.add_argument("--seed-sd", type=float, default=None,
                      help="SD of a run's score over seeds (0-1 scale): adds the power table (analysis/power.py)")
    plan.add_argument("--questions", type=int, default=1000, help="questions per benchmark, with --seed-sd")
    plan.add_argument("--pilot", default=None, help="a pilot study's effects.csv: its standard errors give the power")
    plan.add_argument("--target-effect", type=float, default=None,
                      help="an effect (0-1 scale) to find with 80%% power: prints the replicates it needs")
    plan.add_argument("--backend", default=None, choices=("cpu", "cuda", "hpu"),
                      help="whose memory to predict (default: train.backend; auto counts as hpu)")
    plan.add_argument("--device-memory-gb", type=float, default=None,
                      help="memory per device, GB (default: train.device_memory_gb, else H100 80, Gaudi 2 96)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.fn(args)
    except (UserError, FileNotFoundError) as err:
        # User-fixable problems: one sentence, no traceback (the log keeps the command line).
        print(f"llava-gemma {args.command}: error: {err}", file=sys.stderr)
        return 1
    if result is not None:
        # One write() for the whole result: ranks of one job share a log, and separate writes of
        # two processes would interleave their JSON.
        sys.stdout.flush()
        os.write(sys.stdout.fileno(), (json.dumps(result, indent=2, default=str) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
