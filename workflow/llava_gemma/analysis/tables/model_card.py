"""A cell's model card: README.md in the Hugging Face hub's format (YAML header + Markdown).

Two moments write it. Training writes ``results/cells/<cell>/model/README.md`` with the recipe (the
folder is then a complete checkpoint with its card). Evaluation comes after training, and a rule must not
change another rule's output, so ``write_model_card`` writes the final card, the same text plus a
``model-index`` of the cell's metrics with their bootstrap intervals, to
``results/report/model_cards/<cell>/README.md``; uploading copies it over the model folder's card.

The settings come from the rule (``card_settings`` in common.smk): the cell's levels and their hub ids,
the training datasets, the recipe and the evaluation settings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from llava_gemma.analysis.tables.table1 import COLUMNS, read_metrics

GEMMA_TERMS = "https://ai.google.dev/gemma/terms"
BENCHMARK_NAMES = {"gqa": "GQA", "mme": "MME", "mmvet": "MM-Vet", "pope": "POPE", "vqav2": "VQAv2",
                   "mmvp": "MMVP", "scienceqa_img": "ScienceQA-IMG"}


def headline_metrics(benchmarks: list[str], eval_dir: Path) -> dict[str, dict[str, float]]:
    """Per benchmark, Table 1's metrics and their interval bounds, exactly as its metrics.json holds them."""
    out: dict[str, dict[str, float]] = {}
    for bench, key in COLUMNS.values():
        if bench not in benchmarks:
            continue
        metrics = read_metrics(eval_dir / bench / "metrics.json")
        for k in (key, f"{key}_ci_low", f"{key}_ci_high"):
            if k in metrics and not math.isnan(metrics[k]):
                out.setdefault(bench, {})[k] = metrics[k]
    return out


def failed_questions(benchmarks: list[str], eval_dir: Path) -> dict[str, int]:
    """Per benchmark of Table 1, the questions that could not be asked (``failed_questions``), if any."""
    out = {}
    for bench in dict.fromkeys(b for b, _ in COLUMNS.values()):
        if bench in benchmarks and (n := read_metrics(eval_dir / bench / "metrics.json").get("failed_questions")):
            out[bench] = int(n)
    return out


def _failed_line(failed: dict[str, int]) -> str:
    if not failed:
        return "Failed questions: none (every question's image decoded)."
    where = ", ".join(f"{BENCHMARK_NAMES.get(b, b)} {n}" for b, n in failed.items())
    return (f"Failed questions: {sum(failed.values())} ({where}): their images could not be decoded, and each "
            "counts as a wrong answer, so those values are lower than the model's.")


def _eval_results(metrics: dict[str, dict[str, float]]) -> list[EvalResult]:
    results = []
    for bench, values in metrics.items():
        for key, value in values.items():
            base, _, bound = key.partition("_ci_")
            name = f"{base} (95% bootstrap interval, {bound} end)" if bound else base
            results.append(EvalResult(task_type="visual-question-answering", task_name="Visual question answering",
                                      dataset_type=bench, dataset_name=BENCHMARK_NAMES.get(bench, bench),
                                      metric_type=key, metric_value=value, metric_name=name))
    return results


def card_data(s: dict[str, Any], metrics: dict[str, dict[str, float]] | None) -> ModelCardData:
    sources = s["sources"]
    gemma = bool(sources.get("language_model")) and "gemma" in sources["language_model"].lower()
    license_fields = dict(license="gemma", license_link=GEMMA_TERMS) if gemma else {}
    return ModelCardData(
        model_name=f"llava-gemma {s['cell']}", library_name="transformers", pipeline_tag="image-text-to-text",
        base_model=[h for h in sources.values() if h] or None, datasets=s.get("datasets") or None,
        tags=["llava", "gemma", "vision-language", s["factors"].get("vision_tower", "llava"), s["study"]],
        eval_results=_eval_results(metrics) if metrics else None, **license_fields)


def grouping_phrase(stage: dict) -> str:
    """How a grouped stage drew its steps (train/sampler.py)."""
    steps = stage.get("length_group_steps", 1)
    if steps == 1:
        return ", each step a random draw of one modality (LLaVA-1.5's group_by_modality_length)"
    return f", steps of one modality sorted by length in groups of {steps}"


def _recipe_lines(s: dict[str, Any]) -> list[str]:
    train = s["train"]
    lines = [f"- Precision {train['precision']}, backend {train['backend']}; the vision tower is frozen throughout."]
    for stage, what in (("stage1", "connector only, LM frozen"), ("stage2", "connector + language model")):
        if stage not in train:
            continue
        st = train[stage]
        lines.append(f"- {'Stage 1' if stage == 'stage1' else 'Stage 2'} ({what}): learning rate "
                     f"{st['learning_rate']:g}, global batch {st['global_batch_size']}, {st['epochs']:g} epoch(s), "
                     f"{st['lr_scheduler']} schedule, warmup {st['warmup_ratio']:g}, weight decay "
                     f"{st['weight_decay']:g}" + (grouping_phrase(st) if st.get("group_by_modality_length") else "")
                     + (f", capped at {st['max_steps']} steps" if st.get("max_steps") else "") + ".")
    if "stage1" not in train:
        lines.append("- No stage 1: stage 2 starts from a freshly initialised connector (the skip ablation).")
    recipe = s.get("recipe", {})  # the levels' choices that differ from LLaVA-1.5's (recipe.py)
    if "stage2_trains" in recipe:
        lines.append(f"- Stage 2 trains {', '.join(recipe['stage2_trains'])} (LLaVA-1.5: connector, language_model).")
    if "instruct_sources" in recipe:
        lines.append(f"- Stage 2 data: the instruction mix's {', '.join(recipe['instruct_sources'])} records only.")
    if "image_size" in recipe:
        lines.append(f"- Tower input: {recipe['image_size']} px.")
    if "seed" in train:
        lines.append(f"- Seed {train['seed']}.")
    return lines


def _results_table(metrics: dict[str, dict[str, float]]) -> list[str]:
    rows = ["| benchmark | metric | value | 95% interval |", "|---|---|---:|---|"]
    for bench, values in metrics.items():
        for key, value in values.items():
            if "_ci_" in key:
                continue
            low, high = values.get(f"{key}_ci_low"), values.get(f"{key}_ci_high")
            interval = f"[{low:.4g}, {high:.4g}]" if low is not None and high is not None else "-"
            rows.append(f"| {BENCHMARK_NAMES.get(bench, bench)} | {key} | {value:.4g} | {interval} |")
    return rows


def card_body(s: dict[str, Any], metrics: dict[str, dict[str, float]] | None,
              failed: dict[str, int] | None = None) -> str:
    f, src = s["factors"], s["sources"]
    # A grid may name its factors otherwise; the card then names the cell's levels (its name).
    lm = src.get("language_model") or f"the toy `{f.get('language_model', s['cell'])}` LM"
    tower = src.get("vision_tower") or f"the toy `{f.get('vision_tower', s['cell'])}` tower"
    connector = s.get("recipe", {}).get("connector", "mlp2x_gelu")
    toy = not any(src.values())
    out = [f"# llava-gemma {s['cell']}", "",
           f"A LLaVA-1.5-style vision-language model from the `{s['study']}` study (a reproduction of the "
           "LLaVA-Gemma design study, arXiv 2404.01331): language model "
           f"{lm}, vision tower {tower}, `{connector}` connector, "
           f"{'with' if 'stage1' in s['train'] else 'without'} connector pretraining.", "",
           "## Recipe", "", *_recipe_lines(s), "",
           "Vision features: the tower's second-to-last layer without its CLS token; images padded to a square "
           "of the tower's mean colour. Chat format: Gemma's `<start_of_turn>user ... <end_of_turn>` turns; "
           "only model turns carry labels.", "",
           "## Intended use", "",
           "Research on the design choices of small vision-language models (which language model, which vision "
           "tower, whether to pretrain the connector). Not tuned for safety or for use in products."
           + (" These are tiny models trained for minutes on a generated toy world: they test the pipeline, "
              "their numbers say nothing about real images." if toy else ""),
           *(["", f"Use of this model is subject to the [Gemma Terms of Use]({GEMMA_TERMS}) of its language "
              "model."] if "gemma" in (src.get("language_model") or "").lower() else [])]
    if "eval" in s:  # the final card (write_model_card); the one training writes has no evaluation settings
        benchmarks = s["eval"]["benchmarks"]
        out += ["", "## How it was evaluated", "",
                "Greedy decoding that stops at `<end_of_turn>`, with the reference scripts' answer instructions and "
                "token caps, on " + ", ".join(f"{BENCHMARK_NAMES.get(b, b)}"
                                              + (f" ({o['limit']} questions, seeded)" if o.get("limit") else "")
                                              for b, o in benchmarks.items())
                + ". Each metric is the benchmark's official one, with a bootstrap 95% interval over question "
                "sampling (images resampled whole where questions share one); it does not cover seed variance."]
    if metrics:
        out += ["", "## Results", "", *_results_table(metrics), "", _failed_line(failed or {})]
    else:
        out += ["", "Evaluation follows training: the study's `write_model_card` step writes this card with the "
                "metrics to `results/report/model_cards/" + s["cell"] + "/README.md`."]
    out += ["", "## Use", "", "```python", "from transformers import AutoProcessor, LlavaForConditionalGeneration",
            "model = LlavaForConditionalGeneration.from_pretrained(MODEL_DIR)",
            "processor = AutoProcessor.from_pretrained(MODEL_DIR)", "```", "",
            "or `llava-gemma ask MODEL_DIR IMAGE \"question\" --suffix short` (see the pipeline's README).", ""]
    return "\n".join(out)


def build_card(settings: dict[str, Any], metrics: dict[str, dict[str, float]] | None = None,
               failed: dict[str, int] | None = None) -> ModelCard:
    data = card_data(settings, metrics)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{card_body(settings, metrics, failed)}")


def write_model_card(settings: dict[str, Any], out: Path, eval_dir: Path | None = None) -> dict[str, Any]:
    """Write the card to ``out``; with ``eval_dir`` (results/cells/<cell>/eval) it carries the metrics."""
    evaluated = eval_dir is not None and "eval" in settings
    benchmarks = list(settings["eval"]["benchmarks"]) if evaluated else []
    metrics = headline_metrics(benchmarks, eval_dir) if evaluated else None
    failed = failed_questions(benchmarks, eval_dir) if evaluated else None
    card = build_card(settings, metrics, failed)
    out.parent.mkdir(parents=True, exist_ok=True)
    card.save(out)
    return {"card": str(out), "metrics": json.loads(json.dumps(metrics)) if metrics else {},
            "failed_questions": failed or {}}
