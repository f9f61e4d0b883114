"""The hpu arguments checked against the installed optimum-habana source, without importing it.

``import optimum.habana`` fails on a machine without the Habana software, so the keyword arguments
we pass to ``GaudiTrainingArguments``, ``GaudiConfig`` and ``GaudiTrainer`` are checked against the
fields, ``kwargs.pop`` names and parameters read from its source with ``ast``. Skipped when
optimum-habana is not installed (``pip install -e .[hpu]``; it adds packages, moves none).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest
import yaml
from llava_gemma.config import StageConfig
from llava_gemma.train.batch_plan import plan_batch
from llava_gemma.train.gaudi import gaudi_argument_kwargs, gaudi_config_kwargs

ROOT = Path(__file__).resolve().parents[1]


def optimum_habana_source() -> Path:
    try:
        spec = importlib.util.find_spec("optimum.habana")  # locates the package; runs none of its code
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
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
