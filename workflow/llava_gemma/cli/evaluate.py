"""Commands the evaluation rules run: one benchmark or every benchmark of a cell, and the device check."""

from __future__ import annotations

from pathlib import Path

from llava_gemma.cli.options import Commands, settings


def cmd_evaluate(a) -> dict:
    from llava_gemma.eval.run import evaluate_benchmark, split_settings

    s = settings(a.settings)
    return evaluate_benchmark(Path(a.model), a.benchmark, Path(a.data), Path(a.out), batch_size=s.pop("batch_size"),
                              seed=s.pop("seed", 0), blind=a.blind, work_dir=Path(a.work) if a.work else None,
                              **split_settings(s))


def cmd_evaluate_cell(a) -> dict:
    from llava_gemma.eval.run import evaluate_cell

    s = settings(a.settings)
    metrics = evaluate_cell(Path(a.model), s["benchmarks"], Path(a.data_root), Path(a.out),
                            batch_size=s["batch_size"], seed=s.get("seed", 0),
                            blind_benchmarks=s.get("blind_control", ()),
                            blind_out_root=Path(a.blind_out) if a.blind_out else None,
                            work_root=Path(a.work) if a.work else None)
    return {name: {"questions": m.get("questions"), "wall_seconds": m["wall_seconds"]} for name, m in metrics.items()}


def cmd_device_answers(a) -> dict:
    from llava_gemma.eval.device_check import device_answers

    return device_answers(Path(a.model), a.benchmark, Path(a.data), Path(a.out), device=a.device,
                          questions=a.questions)


def cmd_compare_answers(a) -> dict:
    from llava_gemma.eval.device_check import compare_answers

    return compare_answers(Path(a.device_answers), Path(a.cpu_answers), Path(a.out))


def register(r: Commands) -> None:
    work_help = "folder of partial answers a killed run resumes from (beside the declared outputs)"
    evaluate = r.rule("evaluate", cmd_evaluate, "answer one benchmark with one cell and score it (samples.jsonl, "
                      "metrics.json)", "model", "benchmark", "data", "out")
    evaluate.add_argument("--blind", action="store_true",
                          help="replace every image by a blank one of the tower's mean colour")
    evaluate.add_argument("--work", default=None, help=work_help + "; default <out>/partial")
    evaluate_cell = r.rule("evaluate-cell", cmd_evaluate_cell,
                           "answer every configured benchmark (and the blind-image control) with one cell",
                           "model", "data_root", "out")
    evaluate_cell.add_argument(
        "--blind_out", help="where the blind-image control of the settings' blind_control benchmarks goes")
    evaluate_cell.add_argument("--work", default=None, help=work_help + "; default <out>/<benchmark>/partial")
    answers = r.rule("device-answers", cmd_device_answers,
                     "greedy fp32 answers of a benchmark's first questions on one device (the smoke run's check)",
                     "model", "benchmark", "data", "out")
    answers.add_argument("--device", default=None, help="cpu, cuda or hpu (default: the evaluation device)")
    answers.add_argument("--questions", type=int, default=20, help="how many of the benchmark's questions")
    compare = r.internal_command("compare-answers", cmd_compare_answers,
                                 "fail, naming the questions, unless the device's answers equal the CPU's")
    for name in ("device_answers", "cpu_answers", "out"):
        compare.add_argument(f"--{name}", required=True, help="JSON written by device-answers" if name != "out"
                             else "where the comparison goes (JSON)")
