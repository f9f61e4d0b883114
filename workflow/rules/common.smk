# Config validation, the grid, and every input function the rules use.
import json
import os
from pathlib import Path

from llava_gemma.errors import ConfigError
from llava_gemma.study.config import StudyConfig, validate_config
from llava_gemma.data.sources import hub_sources
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.study.recipe import DEFAULTS as RECIPE_DEFAULTS
from llava_gemma.study.stamp import StudyMismatch, check_study_folders, stamp_study_folders

try:
    validate_config(config, source=", ".join(map(str, workflow.configfiles)) or "config")
    # data/ and results/ belong to one study: another study's files at the same paths would count as done.
    # Every parse checks; only a run that executes jobs stamps (onstart: a dry run writes nothing).
    check_study_folders(Path.cwd(), config["study"])
except (ConfigError, StudyMismatch) as err:
    raise WorkflowError(str(err)) from None


onstart:
    stamp_study_folders(Path.cwd(), config["study"])


STUDY = StudyConfig(config)
# Every run (replicate k > 1 of a cell is <cell>_r<k>) by name, and the stage-1 runs they start from.
CELLS = {cell.name: cell for cell in STUDY.runs}
STAGE1 = {}
for _run in STUDY.runs:
    if _run.pretrains_connector:
        STAGE1.setdefault(_run.pair, _run)
PAIRS = sorted(STAGE1)
BENCHMARKS = list(config["eval"]["benchmarks"])
# Benchmarks with a per-question score (vqav2_testdev has none: EvalAI scores it), for the factor-effect models.
SCORED_BENCHMARKS = [b for b in BENCHMARKS if getattr(get_benchmark(b), "scored", True)]
BLIND_BENCHMARKS = [b for b in config["eval"].get("blind_control", []) if b in BENCHMARKS]

# The two training sets: where their records and images live under data/raw, and their format.
DATASETS = {
    "pretrain": dict(raw="llava_pretrain", records="chat.json", images="images", format="plain", source="cc3m"),
    "instruct": dict(raw="llava_instruct", records="llava_v1_5_mix665k.json", images="images", format="gemma",
                     source="other"),
}


def _alternatives(names):
    # A regex matching exactly these names (or nothing at all).
    return "|".join(map(re.escape, sorted(names))) or "(?!)"


def models_from(kind):
    return [name for name, src in STUDY.models.items() if kind in src]


def local_model_folder(model):
    """A `local:` source's folder; a relative one is read from the repository root. Given relative to the
    working directory when it lies beside it, so a moved or copied clone (or a cluster mounting it elsewhere)
    sees the same input path and reruns nothing."""
    folder = Path(STUDY.model_source(model)["local"])
    return str(folder) if folder.is_absolute() else portable_path(Path(workflow.basedir) / folder)


def portable_path(path):
    """``path`` relative to the working directory (``..`` allowed): the form a move of both cannot change."""
    return os.path.relpath(path)


wildcard_constraints:
    lm=_alternatives(STUDY.language_models),
    tower=_alternatives(STUDY.vision_towers),
    cell=_alternatives(CELLS),
    stage1=_alternatives(PAIRS),
    benchmark=_alternatives(BENCHMARKS),
    dataset=_alternatives(DATASETS),


def settings(obj):
    return json.dumps(obj, sort_keys=True)


# --- raw data --------------------------------------------------------------------------------
# Raw files come from `downloads` (paper) or from the toy world (toy); archives are unpacked by
# `extract` in both. An extraction leaves a marker file, since several archives may fill one folder.
def downloads_of_kind(kind):
    """`downloads` entries fetched as one file ("file": a hub file or a URL) or as a hub folder ("folder")."""
    return [p for p, src in config.get("downloads", {}).items() if ("folder" in src) == (kind == "folder")]


# Hub sources: the preflight (rule check_sources, data/sources.py) resolves each to a commit before any hub
# download; the downloads read that commit, and study.csv lists them. ancient(): a rerun of the preflight
# (a new source) re-downloads nothing.
HUB_SOURCES = hub_sources(config, STUDY.models)
SOURCES_JSON = "data/raw/sources.json"


def hub_download_inputs(wildcards):
    spec = config["downloads"][wildcards.path]
    return dict(sources=ancient(SOURCES_JSON)) if "hub" in spec else {}


def extracted_marker(archive):
    return f"data/raw/{archive}.extracted.json"


def markers_under(prefix):
    return [extracted_marker(a) for a, spec in config.get("extract", {}).items() if spec["into"].startswith(prefix)]


def dataset_records(dataset):
    d = DATASETS[dataset]
    return f"data/raw/{d['raw']}/{d['records']}"


def dataset_inputs(wildcards):
    inputs = [dataset_records(wildcards.dataset), *markers_under(DATASETS[wildcards.dataset]["raw"] + "/")]
    if wildcards.dataset == "instruct" and "ocr_vqa" in config:
        inputs.append(OCR_VQA_REPORT)
    return inputs


# OCR-VQA covers: fetched from their URL list, or audited after a mirror's archive is unpacked; either
# way a report of what is there and what is dead, which the instruct dataset waits for.
OCR_VQA_REPORT = "data/raw/llava_instruct/ocr_vqa_images.json"
OCR_VQA_IMAGES = "data/raw/{raw}/{images}/ocr_vqa/images".format(**DATASETS["instruct"])


def ocr_vqa_inputs(wildcards):
    spec = config["ocr_vqa"]
    inputs = dict(mix=dataset_records("instruct"))
    if spec["source"] == "urls":
        inputs["dataset_json"] = f"data/raw/{spec['dataset_json']}"
    elif spec["archive"] in config.get("extract", {}):
        inputs["mirror"] = extracted_marker(spec["archive"])
    else:
        raise WorkflowError(f"ocr_vqa.archive {spec['archive']!r} is not an `extract` entry; add it there "
                            "(with its `downloads` entry) or use ocr_vqa.source: urls.")
    return inputs


def manual_downloads():
    """Raw files no rule can fetch (OCR-VQA's dataset.json lives on Google Drive) unless `downloads` names a copy."""
    spec = config.get("ocr_vqa", {})
    wanted = [spec["dataset_json"]] if spec.get("source") == "urls" else []
    return [p for p in wanted if p not in config.get("downloads", {})]


# Benchmarks whose images another extraction unpacks (the loaders look there when their own folder
# has none): VQAv2 reads POPE's COCO val2014; GQA test-dev reads GQA's images.zip, unpacked for the mix.
# VQAv2's val2017 split also lists COCO train2017 (unpacked for the mix) to leave its images out.
SHARED_BENCHMARK_IMAGES = {"vqav2": ["benchmarks/pope"], "gqa": ["llava_instruct/images/gqa"]}
if (config["eval"]["benchmarks"].get("vqav2") or {}).get("split") == "val2017":
    SHARED_BENCHMARK_IMAGES["vqav2"].append("llava_instruct/images/coco")


def inputs_of_benchmark(name):
    root = f"benchmarks/{name}"
    if STUDY.is_toy_world:
        return ["data/raw/toy_world.json"]
    shared = [m for prefix in SHARED_BENCHMARK_IMAGES.get(name, []) for m in markers_under(prefix)]
    return ([f"data/raw/{p}" for p in config.get("downloads", {}) if p.startswith(root + "/")]
            + markers_under(root) + shared)


def benchmark_inputs(wildcards):
    return inputs_of_benchmark(wildcards.benchmark)


def cell_benchmark_inputs(names):
    """Input function of a job that evaluates one cell on all of ``names``."""
    return lambda wildcards: sorted({path for name in names for path in inputs_of_benchmark(name)})


# --- training --------------------------------------------------------------------------------
def cell_of(wildcards):
    return CELLS[wildcards.cell]


def stage2_inputs(wildcards):
    cell = cell_of(wildcards)
    inputs = dict(lm=f"data/models/{cell.language_model}", tower=f"data/models/{cell.vision_tower}",
                  data="data/prepared/instruct/data.parquet")
    if cell.pretrains_connector:
        inputs["connector"] = f"results/stage1/{cell.pair}/connector.safetensors"
    return inputs


def train_settings(stage, cell=None):
    """A training job's settings: the stage's hyperparameters (after the cell's levels' overrides), its seed,
    and the recipe's choices that differ from LLaVA-1.5's (so a default cell's settings stay as they were)."""
    t = config["train"]
    optional = ("length_buckets", "gradient_checkpointing", "peak_tflops")  # passed only when set
    stage_settings, seed, recipe = t[stage], t["seed"], {}
    if cell is not None:
        full = STUDY.recipe(cell)
        stage_settings, seed = full["train"][stage], STUDY.seed(cell)
        recipe = {k: full[k] for k in ("connector", "stage2_trains", "instruct_sources")
                  if k in full and full[k] != RECIPE_DEFAULTS.get(k)}
        if stage == "stage1":
            recipe.pop("stage2_trains", None), recipe.pop("instruct_sources", None)
    return settings(dict(stage=stage_settings, backend=t["backend"], precision=t["precision"], seed=seed,
                         save_steps=t["save_steps"], **{k: t[k] for k in optional if k in t}, **recipe))


def train_priority(cell):
    """Cheapest informative runs first: every cell's replicate 1 before any replicate 2, cheaper cells first."""
    from llava_gemma.study.run_order import train_priority as priority

    return priority(STUDY, cell)


def smoke_settings(stage, steps=5):
    # A few steps of the stage's real settings (backend, ZeRO stage, precision): a hardware check.
    s = json.loads(train_settings(stage))
    s["stage"] = {**s["stage"], "max_steps": steps}
    s["save_steps"] = 0
    s["pad_to"] = config["data"]["max_length"]  # every step at the largest shape: an OOM shows here, not hours in
    return settings(s)


# --- targets ---------------------------------------------------------------------------------
def all_metrics():
    return expand("results/cells/{cell}/eval/{benchmark}/metrics.json", cell=CELLS, benchmark=BENCHMARKS)


def blind_metrics():
    return expand("results/cells/{cell}/eval_blind/{benchmark}/metrics.json", cell=CELLS, benchmark=BLIND_BENCHMARKS)


def all_samples():
    return expand("results/cells/{cell}/eval/{benchmark}/samples.jsonl", cell=CELLS, benchmark=BENCHMARKS)


def training_metrics():
    """Every training job's metrics (stage 1 per pair, stage 2 per cell); their logs lie beside them."""
    return (expand("results/stage1/{pair}/train_metrics.json", pair=PAIRS)
            + expand("results/cells/{cell}/model", cell=CELLS))


def relevancy_examples():
    """The configured relevancy examples (or the defaults) on benchmarks this config evaluates."""
    from llava_gemma.analysis.figures.relevancy import DEFAULT_EXAMPLES

    examples = config.get("report", {}).get("relevancy_examples", DEFAULT_EXAMPLES)
    return [dict(benchmark=e["benchmark"], id=str(e["id"])) for e in examples if e["benchmark"] in BENCHMARKS]


def relevancy_inputs(wildcards):
    from types import SimpleNamespace as Namespace

    benchmarks = sorted({e["benchmark"] for e in relevancy_examples()})
    data = [f for b in benchmarks for f in benchmark_inputs(Namespace(benchmark=b))]
    return dict(model=f"results/cells/{wildcards.cell}/model", data=sorted(set(data)))


def paper_sources():
    """Model name -> hub id (None for toy levels): how Table 1 finds the paper's rows for our cells."""
    return {name: src.get("hub") for name, src in STUDY.models.items()}


def report_cells():
    """Every run as the report commands read it (name, cell, replicate, levels, backbones, stage-1 run)."""
    return [cell.to_dict() for cell in CELLS.values()]


def card_settings(cell_name, evaluation=True):
    """What a cell's model card says: its levels and their hub ids, its training data and recipe, and (the final
    card's, ``evaluation``) how it was evaluated. The card training writes leaves evaluation out: it is a param of
    train_cell, and an evaluation setting must not retrain a cell."""
    cell = CELLS[cell_name]
    recipe = STUDY.recipe(cell)
    levels = {"language_model": STUDY.model_source(cell.language_model),
              "vision_tower": STUDY.model_source(cell.vision_tower)}
    wanted = ("llava_pretrain/", "llava_instruct/") if cell.pretrains_connector else ("llava_instruct/",)
    datasets = sorted({src["hub"] for path, src in config.get("downloads", {}).items()
                       if path.startswith(wanted) and "hub" in src})
    t = config["train"]
    train = dict(precision=t["precision"], backend=t["backend"], stage2=recipe["train"]["stage2"])
    if cell.pretrains_connector:
        train["stage1"] = recipe["train"]["stage1"]
    train["seed"] = STUDY.seed(cell)  # always: replicates 1 -> 2 must not change (and so retrain) a first replicate
    extras = {k: recipe[k] for k in ("connector", "stage2_trains", "instruct_sources", "image_size")
              if k in recipe and recipe[k] != RECIPE_DEFAULTS.get(k)}
    return settings(dict(study=config["study"], cell=cell.name, datasets=datasets, train=train,
                         factors=dict(cell.levels), **({"recipe": extras} if extras else {}),
                         sources={k: src.get("hub") for k, src in levels.items()},
                         **({"eval": dict(benchmarks=config["eval"]["benchmarks"],
                                          blind_control=config["eval"].get("blind_control", []))}
                            if evaluation else {})))


def shown_path(path):
    """A path as the report shows it: relative to the working directory when it lies inside it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def report_targets():
    targets = ["results/report/design.md", "results/report/table1.csv", "results/report/table1_vs_paper.csv", "results/report/effects.csv",
               "results/report/speed.csv", "results/report/loss.png", "results/report/data_filter.csv"]
    targets += expand("results/report/model_cards/{cell}/README.md", cell=CELLS)
    targets.append("results/report/study.csv")
    if relevancy_examples():
        targets.append("results/report/relevancy.png")
    if BLIND_BENCHMARKS:
        targets.append("results/report/blind_control.csv")
    return targets
