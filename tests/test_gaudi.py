"""The hpu arguments checked against the installed optimum-habana source, without importing it.

``import optimum.habana`` fails on a machine without the Habana software, so the keyword arguments
we pass to ``GaudiTrainingArguments``, ``GaudiConfig`` and ``GaudiTrainer`` are checked against the
fields, ``kwargs.pop`` names and parameters read from its source with ``ast``. Skipped when
optimum-habana is not installed (``pip install -e .[hpu]``; it adds packages, moves none), except
in CI, which installs it (.ci/run): there a missing optimum-habana fails these tests.

The evaluation path (eval/gaudi.py) is checked the same way, and ``GaudiGenerationConfig`` is even
built: its module imports only transformers, so it loads from its file without the package's
``__init__`` (the part that needs the Habana software).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
from pathlib import Path

import pytest
import torch
import yaml
from llava_gemma.study.batch_plan import plan_batch
from llava_gemma.study.config import StageConfig
from llava_gemma.train.gaudi import gaudi_argument_kwargs, gaudi_config_kwargs

ROOT = Path(__file__).resolve().parents[1]


def optimum_habana_source() -> Path:
    try:
        spec = importlib.util.find_spec("optimum.habana")  # locates the package; runs none of its code
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        if os.environ.get("CI"):
            pytest.fail("optimum-habana is not installed, but CI installs the hpu extra (.ci/run); "
                        "`pip install -e .[test,hpu]`.")
        pytest.skip("optimum-habana is not installed; `pip install -e .[hpu]` (or optimum-habana==1.21.2) to check "
                    "the hpu arguments against it")
    return Path(spec.submodule_search_locations[0])


def class_node(path: Path, name: str) -> ast.ClassDef:
    tree = ast.parse(path.read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name)


def dataclass_fields(node: ast.ClassDef) -> dict[str, ast.AnnAssign]:
    return {s.target.id: s for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}


def field_choices(field: ast.AnnAssign) -> list | None:
    """The ``metadata={"choices": [...]}`` of a ``field(...)`` default, if any."""
    if not isinstance(field.value, ast.Call):
        return None
    for kw in field.value.keywords:
        if kw.arg == "metadata" and isinstance(kw.value, ast.Dict):
            for key, value in zip(kw.value.keys, kw.value.values):
                if isinstance(key, ast.Constant) and key.value == "choices":
                    return ast.literal_eval(value)
    return None


def popped_kwargs(node: ast.ClassDef) -> set[str]:
    """Names ``GaudiConfig.__init__`` takes from ``**kwargs`` (it pops each by name)."""
    init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return {c.args[0].value for c in ast.walk(init) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
            and c.func.attr == "pop" and isinstance(c.func.value, ast.Name) and c.func.value.id == "kwargs"}


def init_parameters(node: ast.ClassDef) -> set[str]:
    init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return {a.arg for a in init.args.args + init.args.kwonlyargs}


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_gaudi_config_kwargs_are_gaudi_config_settings(precision):
    node = class_node(optimum_habana_source() / "transformers" / "gaudi_configuration.py", "GaudiConfig")
    kwargs = gaudi_config_kwargs(precision)
    assert set(kwargs) <= popped_kwargs(node), set(kwargs) - popped_kwargs(node)
    assert kwargs["use_fused_adam"] and kwargs["use_fused_clip_norm"]
    assert kwargs["use_torch_autocast"] == (precision == "bf16")


def test_gaudi_training_arguments_are_fields_with_valid_values(tmp_path):
    from llava_gemma.train.trainer_setup import common_arguments
    from transformers import TrainingArguments

    node = class_node(optimum_habana_source() / "transformers" / "training_args.py", "GaudiTrainingArguments")
    gaudi_fields = dataclass_fields(node)
    # GaudiTrainingArguments subclasses TrainingArguments: its fields are those plus its own.
    known = set(gaudi_fields) | {f.name for f in dataclasses.fields(TrainingArguments)}
    stage = StageConfig(**yaml.safe_load((ROOT / "config.yaml").read_text())["train"]["stage2"])
    plan = plan_batch(stage.global_batch_size, 8, stage.per_device_batch_size)
    common = common_arguments(stage, tmp_path, backend="hpu", precision="bf16", plan=plan, seed=0, save_steps=500)
    extra = gaudi_argument_kwargs()
    assert not set(common) & set(extra)  # no keyword given twice
    unknown = (set(common) | set(extra)) - known
    assert not unknown, f"not arguments of GaudiTrainingArguments 1.21: {unknown}"
    for name, value in {**common, **extra}.items():
        choices = field_choices(gaudi_fields[name]) if name in gaudi_fields else None
        assert choices is None or value in choices, (name, value, choices)
    # What its __post_init__ demands of our values (read from that source; it cannot run here).
    assert extra["use_habana"] and extra["use_lazy_mode"]  # lazy mode is refused without use_habana
    assert not common.get("fp16") and not common.get("tf32")  # refused by optimum-habana
    assert common["dataloader_drop_last"]  # one micro-batch shape: no extra HPU graph for a short last batch
    assert common["gradient_checkpointing"]


def test_gaudi_trainer_takes_our_keywords():
    node = class_node(optimum_habana_source() / "transformers" / "trainer.py", "GaudiTrainer")
    assert {"model", "gaudi_config", "args", "train_dataset", "data_collator", "callbacks"} <= init_parameters(node)


# --- evaluation: optimum-habana's static-shape generation (eval/gaudi.py) ----------------------------


def function_parameters(path: Path, class_name: str, function: str) -> set[str]:
    method = next(n for n in class_node(path, class_name).body
                  if isinstance(n, ast.FunctionDef) and n.name == function)
    return {a.arg for a in method.args.args + method.args.kwonlyargs}


def load_module_file(path: Path, name: str):
    """A module of optimum-habana loaded from its file alone, without its package's __init__."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gaudi_generate_keywords_are_generate_parameters_or_generation_config_settings():
    from llava_gemma.eval.gaudi import gaudi_generate_kwargs

    generation = optimum_habana_source() / "transformers" / "generation"
    parameters = function_parameters(generation / "utils.py", "GaudiGenerationMixin", "generate")
    kwargs = gaudi_generate_kwargs()
    assert {"lazy_mode", "hpu_graphs"} <= parameters and kwargs["lazy_mode"] and kwargs["hpu_graphs"]
    settings = {k: v for k, v in kwargs.items() if k not in parameters}
    module = load_module_file(generation / "configuration_utils.py", "_oh_generation_config")
    config = module.GaudiGenerationConfig(**settings, max_new_tokens=16, do_sample=False)
    assert {name: getattr(config, name) for name in settings} == settings  # each one is a setting it keeps
    assert settings["static_shapes"] is True and settings["ignore_eos"] is False  # stop at <end_of_turn>


def test_gaudi_llava_and_gemma_take_the_static_shape_path():
    source = optimum_habana_source() / "transformers"
    tree = ast.parse((source / "generation" / "utils.py").read_text())
    static = next(ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "MODELS_OPTIMIZED_WITH_STATIC_SHAPES" for t in n.targets))
    assert {"llava", "gemma"} <= set(static)
    adapt = (source / "modeling_utils.py").read_text()
    assert "def adapt_transformers_to_gaudi(" in adapt
    # eval/gaudi.py's LlavaForGaudiGeneration subclasses this Gaudi class (for its static-shape inputs).
    assert ("transformers.models.llava.modeling_llava.LlavaForConditionalGeneration = "
            "GaudiLlavaForConditionalGeneration") in adapt


def test_static_shape_padding_keeps_the_answers(tiny_backbones, tmp_path):
    """The bucket padding alone, on CPU: wider left padding must not change a greedy answer."""
    from llava_gemma.eval.benchmarks.base import Question
    from llava_gemma.eval.gaudi import StaticShapes
    from llava_gemma.eval.generate import PixelCache, answer_rows, chat_prompt
    from llava_gemma.model.assemble import assemble_llava

    from .conftest import draw_scene

    model, processor = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"])
    model.eval()
    draw_scene("red").save(tmp_path / "r.png")
    questions = [Question("a", tmp_path / "r.png", "Is there a circle?", "yes"),
                 Question("b", tmp_path / "r.png", "Is there a red circle in the image?", "yes"),
                 Question("c", None, "How many sides does a triangle have?", "3")]
    prompts = [chat_prompt(processor, q) for q in questions]
    pixels = PixelCache(processor.image_processor, blind=False)
    plain = answer_rows(model, processor, questions, prompts, [0, 1, 2], pixels, 4)
    cpu_static = StaticShapes(bucket=64, generate_kwargs={})  # the padding, without the HPU-only keywords
    padded = answer_rows(model, processor, questions, prompts, [0, 1, 2], pixels, 4, cpu_static)
    assert padded == plain
    ones = torch.ones((2, 70), dtype=torch.long)
    inputs = {"input_ids": ones, "attention_mask": ones}
    wide = cpu_static.pad(inputs, pad_token_id=0)
    assert wide["input_ids"].shape == (2, 128) and int(wide["attention_mask"][:, :58].sum()) == 0


# --- what cannot run on CPU even with the Habana stand-in (tests/test_gaudi_cpu.py runs the rest) ------


def function_source(path: Path, class_name: str, function: str) -> str:
    text = path.read_text()
    method = next(n for n in class_node(path, class_name).body
                  if isinstance(n, ast.FunctionDef) and n.name == function)
    return ast.get_source_segment(text, method)


def test_gaudi_training_arguments_adapt_transformers_when_built_and_need_an_hpu():
    """``GaudiTrainingArguments(...)`` cannot be built on CPU: its ``__post_init__`` refuses DeepSpeed off an
    HPU. Its device setup is what calls ``adapt_transformers_to_gaudi`` (so train/gaudi.py repairs the
    classes right after building the arguments, before the LM loads); the CPU test calls the same function."""
    path = optimum_habana_source() / "transformers" / "training_args.py"
    setup = function_source(path, "GaudiTrainingArguments", "_setup_devices")
    assert "elif self.use_habana:" in setup and "adapt_transformers_to_gaudi()" in setup
    post_init = function_source(path, "GaudiTrainingArguments", "__post_init__")
    assert 'raise ValueError("This version of DeepSpeed must be run on HPUs.")' in post_init
    assert "device_is_hpu = self.device.type == \"hpu\"" in post_init  # self.device runs _setup_devices


def test_the_gaudi_gemma_takes_the_fused_sdpa_keywords_we_add():
    from llava_gemma.train.gaudi import FUSED_SDPA_KWARGS

    gemma = optimum_habana_source() / "transformers" / "models" / "gemma" / "modeling_gemma.py"
    assert set(FUSED_SDPA_KWARGS) <= function_parameters(gemma, "GaudiGemmaModel", "forward")
    assert set(FUSED_SDPA_KWARGS) <= function_parameters(gemma, "GaudiGemmaAttention", "pre_attn_forward")


def test_training_without_cache_restores_every_config(tiny_backbones):
    from llava_gemma.model.assemble import assemble_llava
    from llava_gemma.train.gaudi import enable_fused_sdpa, training_without_cache

    model, _ = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"])
    lm_config = model.model.language_model.config
    assert lm_config.use_cache and model.config.text_config.use_cache
    with training_without_cache(model):
        assert not lm_config.use_cache and not model.config.text_config.use_cache
    assert lm_config.use_cache and model.config.text_config.use_cache
    assert enable_fused_sdpa(model) == {}  # transformers' Gemma takes no such keyword: nothing is hooked


def test_hpu_execution_mode_follows_the_variable_habana_reads():
    from llava_gemma.train.gaudi import hpu_execution_mode

    assert hpu_execution_mode({"PT_HPU_LAZY_MODE": "1"}) == "lazy"
    assert hpu_execution_mode({"PT_HPU_LAZY_MODE": "0"}) == "eager" and hpu_execution_mode({}) == "eager"
