"""Backend choice and its errors, batch arithmetic, length buckets, and the arguments each backend
builds, checked by transformers' own TrainingArguments and DeepSpeed's config validator."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from llava_gemma.errors import ConfigError
from llava_gemma.study.batch_plan import BatchSizeError, plan_batch
from llava_gemma.study.config import StageConfig, validate_config
from llava_gemma.train import backends
from llava_gemma.train.backends import BackendUnavailable, resolve_backend
from llava_gemma.train.dataset import LlavaCollator, padded_width
from llava_gemma.train.gaudi import OptimumHabanaUnavailable, gaudi_trainer
from llava_gemma.train.masking import IGNORE_INDEX

ROOT = Path(__file__).resolve().parents[1]


def study(name: str = "config.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


# --- backend choice --------------------------------------------------------------------------
def test_unknown_backend_names_the_choices():
    with pytest.raises(BackendUnavailable, match=r"train.backend 'tpu' is not one of auto, cpu, cuda, hpu"):
        resolve_backend("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(BackendUnavailable, match="torch sees no GPU"):
        resolve_backend("cuda")


def test_hpu_without_habana_software_is_a_clear_error():
    if backends._habana_available():
        pytest.skip("this machine is a Gaudi node")
    with pytest.raises(BackendUnavailable, match="Habana software"):
        resolve_backend("hpu")


@pytest.mark.parametrize("requested", ["hpu", "auto"])
def test_gaudi_node_without_optimum_habana_is_a_clear_error(monkeypatch, requested):
    monkeypatch.setattr(backends, "_habana_available", lambda: True)
    monkeypatch.setattr(backends, "_optimum_habana_installed", lambda: False)
    with pytest.raises(BackendUnavailable, match=r"optimum-habana is not installed.*pip install -e \.\[hpu\]"):
        resolve_backend(requested)


def test_auto_prefers_hpu_then_cuda_then_cpu(monkeypatch):
    monkeypatch.setattr(backends, "_habana_available", lambda: False)
    monkeypatch.setattr(backends, "_cuda_available", lambda: False)
    assert resolve_backend("auto") == "cpu"
    monkeypatch.setattr(backends, "_cuda_available", lambda: True)
    assert resolve_backend("auto") == "cuda"
    monkeypatch.setattr(backends, "_habana_available", lambda: True)
    monkeypatch.setattr(backends, "_optimum_habana_installed", lambda: True)
    assert resolve_backend("auto") == "hpu"


def test_gaudi_trainer_without_habana_stack_fails_clearly():
    if backends._habana_available():
        pytest.skip("this machine is a Gaudi node")
    with pytest.raises(OptimumHabanaUnavailable, match=r"Habana software stack .* is missing"):
        gaudi_trainer(model=None, args=None, precision="bf16", train_dataset=None, data_collator=None)


def test_optimum_habana_failing_its_version_check_is_one_sentence(monkeypatch):
    """With habana_frameworks present but broken, optimum-habana's import fails with an IndexError."""
    import importlib.util

    class Broken:  # stands in for the package: importing it fails as its Synapse version check does
        def __getattr__(self, name):
            raise IndexError("list index out of range")

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setitem(sys.modules, "optimum.habana", Broken())
    with pytest.raises(OptimumHabanaUnavailable, match="cannot load: the Habana software stack"):
        gaudi_trainer(model=None, args=None, precision="bf16", train_dataset=None, data_collator=None)


def test_missing_optimum_habana_is_named(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # as if habana_frameworks were here
    monkeypatch.setitem(sys.modules, "optimum.habana", None)  # import now raises ModuleNotFoundError
    with pytest.raises(OptimumHabanaUnavailable, match=r"needs optimum-habana.*pip install -e \.\[hpu\]"):
        gaudi_trainer(model=None, args=None, precision="bf16", train_dataset=None, data_collator=None)


# --- batch arithmetic ------------------------------------------------------------------------
@pytest.mark.parametrize(("global_batch", "world", "cap", "micro", "accumulation"), [
    (256, 8, 32, 32, 1),   # the paper's stage 1 on 8 Gaudi 2
    (128, 8, 16, 16, 1),   # the paper's stage 2
    (256, 4, 32, 32, 2),   # half the devices: accumulation doubles
    (256, 1, 32, 32, 8),
    (128, 8, 12, 8, 2),    # the cap does not divide the share: largest divisor below it
    (96, 2, 32, 24, 2),
    (16, 16, 4, 1, 1),
    (7, 1, 4, 1, 7),       # a prime share: micro-batch 1
])
def test_batch_plan_reaches_the_global_batch_exactly(global_batch, world, cap, micro, accumulation):
    plan = plan_batch(global_batch, world, cap)
    assert (plan.micro_batch_size, plan.accumulation_steps) == (micro, accumulation)
    assert plan.micro_batch_size * plan.accumulation_steps * world == global_batch
    assert plan.micro_batch_size <= cap


@pytest.mark.parametrize(("global_batch", "world"), [(128, 3), (256, 6), (10, 20)])
def test_unreachable_global_batch_is_an_error(global_batch, world):
    with pytest.raises(BatchSizeError) as err:
        plan_batch(global_batch, world, 16, stage="stage2")
    message = str(err.value)
    assert f"train.stage2.global_batch_size {global_batch} is not a multiple of the {world} training processes" \
        in message
    assert "\n" not in message


def test_config_with_unreachable_batch_names_the_key():
    raw = study()
    raw["train"]["devices"] = 3
    with pytest.raises(ConfigError, match=r"train\.stage1\.global_batch_size 256 is not a multiple of the 3"):
        validate_config(raw)


def test_config_accepts_a_cap_that_does_not_divide():
    raw = study()
    raw["train"]["stage2"]["per_device_batch_size"] = 12  # 128 / 8 = 16 per device -> micro 8, accumulation 2
    validate_config(raw)


def test_zero_stage_per_backend():
    stage = StageConfig(**study()["train"]["stage2"])
    assert (stage.zero_stage_for("cuda"), stage.zero_stage_for("hpu"), stage.zero_stage_for("cpu")) == (3, 2, 3)
    assert StageConfig(**study()["train"]["stage1"]).zero_stage_for("hpu") == 2


# --- length buckets --------------------------------------------------------------------------
@pytest.mark.parametrize(("longest", "buckets", "width"), [
    (100, None, 100), (100, (256, 512), 256), (256, (256, 512), 256), (257, (256, 512), 512)])
def test_padded_width(longest, buckets, width):
    assert padded_width(longest, buckets) == width


def test_row_longer_than_every_bucket_is_an_error():
    with pytest.raises(ValueError, match="longer than the largest length bucket 512"):
        padded_width(600, (256, 512))


def test_collator_pads_to_the_bucket():
    collator = LlavaCollator(image_processor=None, image_token_id=5, image_tokens=4, pad_token_id=0,
                             length_buckets=[64, 16, 32])
    rows = [{"input_ids": np.arange(10, 20), "labels": np.arange(10, 20), "image_path": None},
            {"input_ids": np.arange(10, 28), "labels": np.full(18, IGNORE_INDEX), "image_path": None}]
    batch = collator(rows)
    assert batch["input_ids"].shape == (2, 32)  # longest row 18 -> bucket 32, not 18 and not 64
    assert batch["attention_mask"].sum(dim=1).tolist() == [10, 18]
    assert (batch["labels"][0, 10:] == IGNORE_INDEX).all() and (batch["input_ids"][0, 10:] == 0).all()
    assert "pixel_values" not in batch


def test_buckets_must_hold_the_longest_sample():
    raw = study()
    raw["train"]["length_buckets"] = [256, 512, 1024]
    with pytest.raises(ConfigError, match=r"train.length_buckets \[256, 512, 1024\] cannot hold .* 2048"):
        validate_config(raw)


# --- arguments, checked by the libraries' own classes ------------------------------------------
@pytest.fixture
def one_process(monkeypatch):
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(backends.free_port())}.items():
        monkeypatch.setenv(key, value)


def as_if_bf16_gpu(monkeypatch):
    """TrainingArguments refuses bf16 without an Ampere GPU; stand in for one (the only hardware gate)."""
    import transformers.training_args

    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)


def as_if_processes(monkeypatch, world: int):
    """Build and validate as rank 0 of ``world`` processes would (the batch values depend on it)."""
    import deepspeed.comm
    from transformers import TrainingArguments

    monkeypatch.setattr(TrainingArguments, "world_size", property(lambda self: world))
    monkeypatch.setattr(deepspeed.comm, "get_world_size", lambda *a, **k: world)
    monkeypatch.setattr(deepspeed.comm, "get_rank", lambda *a, **k: 0)


def validated_deepspeed(args, hidden_size: int = 2048):
    """Finish the DeepSpeed config as Trainer does (hidden-size 'auto's, mismatch check against the
    arguments), then let DeepSpeed's own validator parse it."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import GemmaConfig, LlavaConfig

    class Shell:  # Trainer reads only model.config here
        config = LlavaConfig(text_config=GemmaConfig(hidden_size=hidden_size).to_dict())

    hf_config = copy.deepcopy(args.hf_deepspeed_config)
    hf_config.trainer_config_finalize(args, Shell(), num_training_steps=100)  # raises on mismatches
    return DeepSpeedConfig(hf_config.config)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("world", [1, 8])
@pytest.mark.parametrize("stage_name", ["stage1", "stage2"])
def test_training_arguments_pass_transformers_and_deepspeed(monkeypatch, one_process, tmp_path, backend, world,
                                                           stage_name):
    from llava_gemma.train.trainer_setup import training_arguments

    precision = "bf16" if backend == "cuda" else "fp32"
    if backend == "cuda":
        as_if_bf16_gpu(monkeypatch)
    as_if_processes(monkeypatch, world)
    stage = StageConfig(**study()["train"][stage_name])
    args = training_arguments(stage, tmp_path, backend=backend, precision=precision, world_size=world, seed=1,
                              save_steps=0, stage_name=stage_name)
    ds = validated_deepspeed(args)
    assert ds.train_batch_size == stage.global_batch_size
    assert ds.train_micro_batch_size_per_gpu * ds.gradient_accumulation_steps * world == stage.global_batch_size
    assert args.per_device_train_batch_size == ds.train_micro_batch_size_per_gpu <= stage.per_device_batch_size
    assert ds.zero_optimization_stage == {"stage1": 2, "stage2": 3}[stage_name]
    assert ds.bfloat16_config.enabled == (precision == "bf16") == args.bf16
    assert args.gradient_checkpointing == (backend == "cuda")
    assert ds.gradient_clipping == args.max_grad_norm


def test_gradient_checkpointing_switch_overrides_the_backend_default(one_process, tmp_path):
    from llava_gemma.train.trainer_setup import training_arguments

    stage = StageConfig(**study("toy.yaml")["train"]["stage1"])
    args = training_arguments(stage, tmp_path, backend="cpu", precision="fp32", world_size=1, seed=1, save_steps=0,
                              gradient_checkpointing=True)
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}


@pytest.mark.parametrize("stage_name", ["stage1", "stage2"])
def test_gaudi_deepspeed_config_is_zero2_without_optimizer(monkeypatch, stage_name):
    """The hpu DeepSpeed dict in the Gaudi form passes DeepSpeed's validator for 8 processes."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from llava_gemma.train.deepspeed_config import deepspeed_config

    as_if_processes(monkeypatch, 8)
    stage = StageConfig(**study()["train"][stage_name])
    plan = plan_batch(stage.global_batch_size, 8, stage.per_device_batch_size)
    config = deepspeed_config(stage.zero_stage_for("hpu"), "bf16", "hpu", plan)
    assert "optimizer" not in config  # GaudiTrainer's FusedAdamW is the client optimizer
    filled = {**config, "gradient_clipping": 1.0}  # the one 'auto' left on hpu; Trainer fills it
    ds = DeepSpeedConfig(filled)
    assert ds.zero_optimization_stage == 2 and ds.bfloat16_config.enabled
    assert ds.train_batch_size == stage.global_batch_size
    assert not ds.zero_config.overlap_comm and not ds.zero_config.contiguous_gradients


def test_sdpa_and_gradient_checkpointing_train_the_connector(tiny_backbones):
    """What cuda and hpu run: SDPA attention, non-reentrant checkpointing, frozen tower and LM."""
    from llava_gemma.model.assemble import assemble_llava, set_trainable

    model, _ = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"], attn_implementation="sdpa")
    assert model.model.language_model.config._attn_implementation == "sdpa"
    set_trainable(model, "stage1")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    n_image = model.config.image_seq_length
    ids = torch.tensor([[2] + [model.config.image_token_index] * n_image + [10, 11, 12]])
    side = model.config.vision_config.image_size
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=torch.rand(1, 3, side, side),
                labels=ids.masked_fill(ids == model.config.image_token_index, IGNORE_INDEX))
    out.loss.backward()
    connector = model.model.multi_modal_projector
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in connector.parameters())


def test_one_cpu_process_skips_the_shared_memory_comm_build(monkeypatch):
    import deepspeed.ops
    from deepspeed.comm.torch import build_shm_op

    ops = deepspeed.ops.__compatible_ops__
    monkeypatch.setitem(ops, "deepspeed_shm_comm", True)  # restored after the test
    assert not backends.skip_shared_memory_comm_build("cpu", 2) and ops["deepspeed_shm_comm"]
    assert not backends.skip_shared_memory_comm_build("cuda", 1) and ops["deepspeed_shm_comm"]
    assert backends.skip_shared_memory_comm_build("cpu", 1) and not ops["deepspeed_shm_comm"]
    assert build_shm_op() is None  # what DeepSpeed's TorchBackend calls: nothing compiled
