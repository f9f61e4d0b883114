"""Commands the report rules run: Table 1, the effects, speed, loss, relevancy, the design page,
the study's metadata and the model cards."""

from __future__ import annotations

import json
from pathlib import Path

from llava_gemma.cli.options import Commands, runs, settings


def _write_report_table(a, build, write) -> dict:
    s = settings(a.settings)
    table = build(runs(a), s["benchmarks"], Path(a.cells_dir))
    write(table, Path(a.out))
    print(table.to_string(index=False))
    return {"rows": len(table)}


def cmd_report(a) -> dict:
    from llava_gemma.analysis.tables.paper import build_comparison, write_comparison
    from llava_gemma.analysis.tables.table1 import build_table1, write_table1

    def write(table, out_dir):
        write_table1(table, out_dir)
        # Beside the published Table 1: cells matched by checkpoint (hub id) or, for toy grids, level name.
        write_comparison(build_comparison(table, settings(a.settings).get("sources", {})), out_dir)

    return _write_report_table(a, build_table1, write)


def cmd_blind_report(a) -> dict:
    from llava_gemma.analysis.tables.blind_control import build_blind_control, write_blind_control

    return _write_report_table(a, build_blind_control, write_blind_control)


def cmd_effects(a) -> dict:
    from llava_gemma.analysis.statistics.effects import build_effects, write_effects
    from llava_gemma.analysis.statistics.run_effects import build_run_effects

    s = settings(a.settings)
    if "factors" not in s:  # paper-grid cell names only: the three factors, one run per cell
        return _write_report_table(a, build_effects, write_effects)
    effects = build_run_effects(runs(a), s["benchmarks"], Path(a.cells_dir), dict(s["factors"]),
                                s.get("design", "full"))
    write_effects(effects, Path(a.out))
    print(effects.to_string(index=False))
    return {"rows": len(effects)}


def cmd_speed(a) -> dict:
    from llava_gemma.analysis.tables.speed import build_speed, relative_speed, write_speed

    speed = build_speed(runs(a), settings(a.settings)["benchmarks"], Path(a.results_dir))
    write_speed(speed, Path(a.out))
    print(speed.to_string(index=False))
    return {"relative": relative_speed(speed).to_dict(orient="records")}


def cmd_loss_plot(a) -> dict:
    from llava_gemma.analysis.figures.training import write_loss_plot

    return write_loss_plot(runs(a), Path(a.results_dir), Path(a.out))


def cmd_data_filter(a) -> dict:
    from llava_gemma.analysis.figures.training import data_filter_summary
    from llava_gemma.analysis.tables.table1 import to_markdown

    summary = data_filter_summary(Path(a.prepared_dir))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "data_filter.csv", index=False, float_format="%.4f")
    (out / "data_filter.md").write_text(to_markdown(summary))
    return {"rows": len(summary)}


def cmd_relevancy(a) -> dict:
    from llava_gemma.analysis.figures.relevancy import compute_cell_relevancy, maps_to_json

    maps = compute_cell_relevancy(Path(a.model), settings(a.settings)["examples"], Path(a.data))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(maps_to_json(maps)) + "\n")
    return {"examples": [f"{m.benchmark}/{m.qid}: {m.answer_token!r}" for m in maps]}


def cmd_relevancy_figure(a) -> dict:
    from llava_gemma.analysis.figures.relevancy_figure import write_relevancy_figure

    return write_relevancy_figure([Path(m) for m in a.maps], Path(a.out))


def cmd_design(a) -> dict:
    from llava_gemma.analysis.tables.design_page import write_design

    return write_design(settings(a.settings), Path(a.out))


def cmd_describe_study(a) -> dict:
    from llava_gemma.analysis.tables.study_info import write_study_metadata

    return write_study_metadata(settings(a.settings), Path(a.repo), Path(a.out))


def cmd_model_card(a) -> dict:
    from llava_gemma.analysis.tables.model_card import write_model_card

    return write_model_card(settings(a.settings), Path(a.out), Path(a.eval_dir) if a.eval_dir else None)


def register(r: Commands) -> None:
    r.rule("report", cmd_report, "Table 1 (csv, md, tex) and its comparison with the published table",
           "cells_dir", "out")
    r.rule("blind-report", cmd_blind_report,
           "the blind-image control table: each cell's scores with and without images", "cells_dir", "out")
    r.rule("effects", cmd_effects, "fit the factor-effect models on per-question records and plot them",
           "cells_dir", "out")
    r.rule("speed", cmd_speed, "the speed table and figure from training and evaluation metrics",
           "results_dir", "out")
    r.rule("loss-plot", cmd_loss_plot, "plot the training loss curves of every stage-1 run and cell",
           "results_dir", "out")
    r.rule("data-filter", cmd_data_filter, "summarise what data preparation dropped, by reason",
           "prepared_dir", "out")
    r.rule("relevancy", cmd_relevancy, "compute one cell's relevancy maps for the configured examples",
           "model", "data", "out")
    r.rule("relevancy-figure", cmd_relevancy_figure, "draw every cell's relevancy maps into one figure",
           "out").add_argument("--maps", nargs="+", required=True,
                               help="the cells' relevancy JSON files (results/report/relevancy/*.json)")
    r.rule("design", cmd_design,
           "write the study's design (cells, replicates, aliasing, resolution) as Markdown (design.md)", "out")
    r.rule("describe-study", cmd_describe_study,
           "the report's study metadata: config files, commit, library versions, date", "repo", "out")
    r.rule("model-card", cmd_model_card,
           "write a cell's model card (README.md in the hub's format), with metrics when given",
           "out").add_argument("--eval_dir", default=None,
                               help="the cell's eval folder (results/cells/<cell>/eval): add its metrics")
