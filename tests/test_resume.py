"""Resume after a crash: only complete checkpoints of the same run count, and a SIGKILLed run resumes to the
same result as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from llava_gemma.train.checkpoints import (
    MANIFEST,
    ManifestCallback,
    RunIdentity,
    newest_resumable,
    prepare_resume,
    read_manifest,
    run_identity,
    write_manifest,
)

from tests import train_helpers as th

RUN = RunIdentity("f" * 16, world_size=2)


def checkpoint(work: Path, step: int, identity: RunIdentity | None = RUN) -> Path:
    """A checkpoint folder as the Trainer leaves it; complete (with manifest) unless identity is None."""
    path = work / f"checkpoint-{step}"
    (path / f"global_step{step}").mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"w" * 64)
    (path / f"global_step{step}" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"o" * 128)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if identity is not None:
        write_manifest(path, identity, step)
    return path


def test_newest_complete_checkpoint_wins_and_an_unfinished_save_is_removed(tmp_path):
    checkpoint(tmp_path, 10)
    checkpoint(tmp_path, 20)
    crashed = checkpoint(tmp_path, 30, identity=None)  # killed mid-save: no manifest
    assert newest_resumable(tmp_path, RUN) == tmp_path / "checkpoint-20"

    assert prepare_resume(tmp_path, RUN, is_main=False) == tmp_path / "checkpoint-20"
    assert crashed.exists()  # only rank 0 deletes
    assert prepare_resume(tmp_path, RUN, is_main=True) == tmp_path / "checkpoint-20"
    assert not crashed.exists() and (tmp_path / "checkpoint-10").exists()


def test_a_checkpoint_whose_files_no_longer_match_its_manifest_is_not_complete(tmp_path):
    path = checkpoint(tmp_path, 10)
    assert read_manifest(path)["files"]["model.safetensors"] == 64
    (path / "model.safetensors").write_bytes(b"w" * 10)  # truncated
    assert read_manifest(path) is None
    path = checkpoint(tmp_path, 20)
    (path / "global_step20" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").unlink()  # rotation cut short
    assert read_manifest(path) is None
    (checkpoint(tmp_path, 30) / MANIFEST).write_text('{"files": ')  # torn manifest (cannot happen: renamed in)
    assert newest_resumable(tmp_path, RUN) is None


def test_checkpoints_of_another_configuration_or_world_size_are_never_resumed(tmp_path):
    checkpoint(tmp_path, 10, RunIdentity("0" * 16, world_size=2))
    checkpoint(tmp_path, 20, RunIdentity(RUN.fingerprint, world_size=8))
    assert prepare_resume(tmp_path, RUN, is_main=True) is None
    assert not list(tmp_path.iterdir())


def test_fingerprint_follows_settings_and_inputs(tmp_path):
    data = tmp_path / "data.parquet"
    data.write_bytes(b"x")
    base = run_identity({"lr": 1e-3}, [data, None], world_size=1)
    assert run_identity({"lr": 1e-3}, [data, None], world_size=1) == base
    assert run_identity({"lr": 2e-3}, [data, None], world_size=1).fingerprint != base.fingerprint
    data.write_bytes(b"xy")  # rebuilt input
    assert run_identity({"lr": 1e-3}, [data, None], world_size=1).fingerprint != base.fingerprint


def test_the_trainer_callback_publishes_the_manifest_after_the_save(tmp_path):
    path = checkpoint(tmp_path, 7, identity=None)
    state = SimpleNamespace(global_step=7, is_world_process_zero=True)
    ManifestCallback(RUN).on_save(SimpleNamespace(output_dir=str(tmp_path)), state, control=None)
    manifest = read_manifest(path)
    assert manifest["step"] == 7 and manifest["world_size"] == 2
    assert set(manifest["files"]) == {"model.safetensors", "trainer_state.json",
                                      "global_step7/zero_pp_rank_0_mp_rank_00_optim_states.pt"}


def test_no_code_or_pickle_from_a_checkpoint_is_ever_trusted():
    """Weights travel as safetensors; nothing in the package turns on remote code or full unpickling."""
    package = Path(__file__).resolve().parents[1] / "workflow" / "llava_gemma"
    offenders = [f"{path.relative_to(package)}: {needle}" for path in package.rglob("*.py")
                 for needle in ("trust_remote_code=True", "weights_only=False") if needle in path.read_text()]
    assert not offenders


# --- SIGKILL mid-stage, then rerun ------------------------------------------------------------

STEPS = 12  # 24 captions, global batch 2: a checkpoint after every step


@pytest.fixture(scope="module")
def caption_data(tiny_backbones, tmp_path_factory):
    return th.prepare_captions(tiny_backbones, tmp_path_factory.mktemp("captions"))


def train(tiny_backbones, caption_data, out: Path) -> list[str]:
    return th.llava_gemma("launch", "--tasks", "1", "--backend", "cpu", "--",
                          *th.train_argv(tiny_backbones, *caption_data, out, per_device=1, global_batch=2,
                                         save_steps=1))


def kill_after_a_checkpoint(argv: list[str], work: Path, timeout: float = 600) -> int:
    """Start the run, SIGKILL it as soon as a complete checkpoint exists; the step it had reached."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=th.quiet_env(),
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = [read_manifest(p) for p in work.glob("checkpoint-*")]
            steps = [m["step"] for m in done if m]
            if steps and max(steps) >= 2:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return max(steps)
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    raise AssertionError(f"the run ended (exit {proc.returncode}) before it could be killed mid-stage")


@pytest.mark.slow
def test_a_run_killed_mid_stage_resumes_to_the_uninterrupted_result(tiny_backbones, caption_data, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    th.run(train(tiny_backbones, caption_data, whole))

    reached = kill_after_a_checkpoint(train(tiny_backbones, caption_data, killed), killed / "work")
    assert reached < STEPS and not (killed / "out" / "train_metrics.json").exists()
    # A crash in the middle of a later save leaves a folder without manifest: it must be ignored.
    planted = killed / "work" / f"checkpoint-{STEPS - 1}"
    planted.mkdir(exist_ok=True)
    (planted / "model.safetensors").write_bytes(b"half")

    rerun = th.run(train(tiny_backbones, caption_data, killed))
    assert f"removing {planted} (incomplete)" in rerun.stderr
    metrics, weights = th.trained(killed)
    resumed_step = int(Path(metrics["resumed_from"]).name.split("-")[1])
    assert metrics["resumed"] and 2 <= resumed_step <= reached
    assert metrics["steps"] == STEPS
    assert not list((killed / "work").glob("checkpoint-*"))  # outputs written: checkpoints discarded

    reference, reference_weights = th.trained(whole)
    # Model, optimizer, scheduler, data position and RNG all restored: the same trajectory. CPU
    # training is not bit-reproducible run to run: logged losses (4 decimals) may differ by one unit
    # in the last place, weights by 1e-5 relative.
    assert th.losses(killed) == pytest.approx(th.losses(whole), abs=1.5e-4)
    assert metrics["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-5)
    for name, tensor in reference_weights.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-7, msg=name)
