"""The workflow on a real SLURM scheduler: the one-node loopback cluster of .ci/slurm-local.sh.

The reduced toy study (tests/test_workflow.py) runs through the SLURM executor with the
profiles/slurm-ci profile; the tests then rerun single cells, train with two srun-started ranks
and plant a failing job. They skip when the cluster cannot start here (not root, no apt-get),
except under CI (the `CI` environment variable, which .ci/run sets), where they must run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from . import train_helpers as th
from .slurm.cluster import cluster_script, daemon_logs, finished_jobs, job_comments
from .slurm.workflow_run import WorkflowRun, run_workflow
from .test_workflow import reduced_toy_config

pytestmark = pytest.mark.slurm

CELLS = ("2b_clip_pretrain", "2b_clip_skip", "2b_dinov2_pretrain", "2b_dinov2_skip")


@pytest.fixture(scope="module")
def slurm_cluster():
    """The local cluster, started for these tests and stopped after them (also when one fails).
    A cluster already running (started by hand) is used and left running."""
    if not _plugin_installed():
        _skip_or_fail("snakemake-executor-plugin-slurm is not installed (pip install -e .)")
    if cluster_script("status").ok:
        yield
        return
    started = cluster_script("start")
    if not started.ok:
        cluster_script("stop")  # whatever did start
        _skip_or_fail(f"no local SLURM cluster: {started.message}")
    try:
        yield
    finally:
        cluster_script("stop")


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI runs the SLURM tests, but: {reason}")
    pytest.skip(reason)


def _plugin_installed() -> bool:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return False
    return True


def _new_study(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(reduced_toy_config()))
    return root


@pytest.fixture(scope="module")
def local_study(reduced_study) -> Path:
    """The reference: the same reduced study run locally (--cores 2), shared with test_workflow."""
    return reduced_study


@pytest.fixture(scope="module")
def slurm_study(slurm_cluster, tmp_path_factory) -> tuple[Path, WorkflowRun]:
    """The reduced study run to Table 1 through the SLURM executor (later tests rerun parts of it)."""
    workdir = _new_study(tmp_path_factory.mktemp("slurm_study"))
    return workdir, run_workflow(workdir)


def _mtimes(workdir: Path) -> dict[str, int]:
    return {str(p.relative_to(workdir)): p.stat().st_mtime_ns
            for top in ("data", "results") for p in (workdir / top).rglob("*") if p.is_file()}


def _changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def _assert_all_ran_on_slurm(run: WorkflowRun, state: str = "COMPLETED") -> None:
    """Every job but local ones was submitted to SLURM, and the scheduler recorded it as ``state``."""
    remote = [job for job in run.jobs.values() if not job.local and job.rule != "all"]
    assert remote, run.tail()
    unsubmitted = [f"{j.rule} {j.wildcards}" for j in remote if j.slurm_id is None]
    assert not unsubmitted, f"jobs that never reached SLURM: {unsubmitted}\n{run.tail()}"
    finished = finished_jobs()
    states = {job.slurm_id: finished[job.slurm_id].state if job.slurm_id in finished else "not finished"
              for job in remote}
    wrong = {i: s for i, s in states.items() if s != state}
    assert not wrong, f"SLURM job states other than {state}: {wrong}\n{daemon_logs()}"


def _cell_jobs(run: WorkflowRun) -> dict[str, list[str]]:
    """The rules each cell's jobs ran, by cell; jobs without a cell under ''."""
    by_cell: dict[str, list[str]] = {}
    for job in run.jobs.values():
        by_cell.setdefault(job.wildcards.get("cell", ""), []).append(job.rule)
    return by_cell


def test_reduced_toy_study_runs_on_slurm_and_matches_the_local_run(slurm_study, local_study):
    workdir, run = slurm_study
    assert run.returncode == 0, f"{run.tail()}\n{daemon_logs()}"
    _assert_all_ran_on_slurm(run)
    assert len(run.jobs_of_rule("train_cell")) == len(CELLS)
    # Scheduler side: SLURM's own record of each job names the rule that Snakemake submitted.
    comments = job_comments(run.slurm_ids())
    for job in run.jobs.values():
        if job.slurm_id in comments:
            assert comments[job.slurm_id].startswith(f"rule_{job.rule}"), (job, comments[job.slurm_id])

    for table in ("table1.csv", "blind_control.csv"):
        on_slurm = (workdir / "results/report" / table).read_text()
        local = (local_study / "results/report" / table).read_text()
        assert on_slurm == local, f"{table} differs between the SLURM run and the local run"


def test_rerunning_one_cell_resubmits_only_that_cell(slurm_study):
    workdir, first = slurm_study
    if first.returncode != 0:
        pytest.skip("the SLURM study itself failed (see the first test)")

    # 1. One cell's evaluation output deleted: only that evaluation (and the tables) run again.
    # Snakemake remakes a deleted file only when asked for it (a missing intermediate file whose
    # downstream results are up to date is not rebuilt), so the rerun names it, and `all` too.
    cell = "2b_dinov2_skip"
    before = _mtimes(workdir)
    shutil.rmtree(workdir / f"results/cells/{cell}/eval/pope")
    run = run_workflow(workdir, "all", f"results/cells/{cell}/eval/pope/metrics.json")
    assert run.returncode == 0, run.tail()
    _assert_all_ran_on_slurm(run)
    jobs = _cell_jobs(run)
    assert set(jobs) <= {cell, ""}, f"jobs of other cells ran: {jobs}"
    # One evaluation job (per benchmark or per cell, as config eval.one_job_per says), and the cell's
    # model card, which carries its metrics.
    evaluations = [job for job in jobs[cell] if job.startswith("evaluate")]
    assert len(evaluations) == 1 and set(jobs[cell]) - set(evaluations) <= {"write_model_card"}, jobs
    assert (workdir / f"results/cells/{cell}/eval/pope/metrics.json").exists()
    _assert_only_cell_changed(before, _mtimes(workdir), cell)

    # 2. One cell's model deleted: that cell trains again and all its evaluations rerun, nothing else.
    cell = "2b_clip_skip"
    before = _mtimes(workdir)
    shutil.rmtree(workdir / f"results/cells/{cell}/model")
    run = run_workflow(workdir, "all", f"results/cells/{cell}/model")
    assert run.returncode == 0, run.tail()
    _assert_all_ran_on_slurm(run)
    jobs = _cell_jobs(run)
    assert set(jobs) <= {cell, ""}, f"jobs of other cells ran: {jobs}"
    assert jobs[cell].count("train_cell") == 1, jobs
    assert not {"train_connector", "prepare_dataset"} & set(jobs.get("", [])), jobs
    after = _mtimes(workdir)
    evaluations = [p for p in before if p.startswith(f"results/cells/{cell}/eval") and p.endswith("metrics.json")]
    assert evaluations and all(after.get(p, 0) > before[p] for p in evaluations), "not every evaluation reran"
    _assert_only_cell_changed(before, after, cell)

    # 3. README's way to retrain one cell and re-evaluate it plans exactly those two jobs.
    target = f"results/cells/{cell}/eval/pope/metrics.json"
    plan = run_workflow(workdir, "-n", "--forcerun", "train_cell", "--", target)
    assert plan.returncode == 0, plan.tail()
    planned = sorted((j.rule, j.wildcards.get("cell")) for j in plan.jobs.values())
    assert len(planned) == 2 and planned[0][0].startswith("evaluate"), plan.tail()
    assert planned[1] == ("train_cell", cell) and planned[0][1] == cell, planned


def _assert_only_cell_changed(before: dict[str, int], after: dict[str, int], cell: str) -> None:
    """Only the cell's own files changed, besides the report's tables and figures over all cells
    (results/report/<file>); per-cell report files of other cells (results/report/*/<cell>.*) did not."""
    changed = _changed(before, after)
    assert any(p.startswith(f"results/cells/{cell}/") for p in changed), "the rerun rewrote nothing of the cell"

    def allowed(path: str) -> bool:
        parts = Path(path).parts
        over_all_cells = parts[:2] == ("results", "report") and len(parts) == 3
        # results/report/relevancy/<cell>.json, results/report/model_cards/<cell>/README.md
        of_this_cell = parts[:2] == ("results", "report") and (Path(path).stem == cell or cell in parts[2:])
        return path.startswith(f"results/cells/{cell}/") or over_all_cells or of_this_cell

    foreign = sorted(p for p in changed if not allowed(p))
    assert not foreign, f"a rerun of {cell} touched other cells' or shared inputs' files: {foreign[:20]}"


def test_two_rank_training_under_srun_equals_one_rank(slurm_study, tmp_path):
    """Stage 1 of one pair with two ranks (tasks=2, gloo on CPU) started by srun inside one SLURM
    allocation, through the training rule's launch code, against the same stage on one rank."""
    workdir, first = slurm_study
    if first.returncode != 0:
        pytest.skip("the SLURM study itself failed (see the first test)")
    target = "results/stage1/2b_clip/train_metrics.json"
    results = {}
    for ranks in (1, 2):
        copy = tmp_path / f"ranks{ranks}"
        copy.mkdir()
        shutil.copy2(workdir / "config.yaml", copy / "config.yaml")
        shutil.copytree(workdir / "data", copy / "data", copy_function=shutil.copy2)  # mtimes kept: data is final
        resources = [f"train_connector:tasks={ranks}"]
        if ranks > 1:
            # What a multi-GPU/Gaudi profile sets: Snakemake's jobstep leaves `srun` to the rule's launcher.
            resources.append("train_connector:mpi=srun")
        run = run_workflow(copy, target, "--set-resources", *resources)
        assert run.returncode == 0, f"{run.tail()}\n{(copy / 'logs/train_connector/2b_clip.log').read_text()[-3000:]}"
        assert [j.rule for j in run.jobs.values() if not j.local and j.rule != "all"] == ["train_connector"], \
            "the copied data was rebuilt instead of reused"
        _assert_all_ran_on_slurm(run)
        results[ranks] = (copy, run)

    two_ranks_dir, _ = results[2]
    log = (two_ranks_dir / "logs/train_connector/2b_clip.log").read_text()
    assert "llava-gemma launch: srun: srun" in log, log[-3000:]
    rank_results = th.rank_results(log)  # each srun task prints its own result
    assert [r["world_size"] for r in rank_results] == [2, 2], log[-3000:]
    assert rank_results[0]["final_loss"] == pytest.approx(rank_results[1]["final_loss"], rel=1e-6)

    one, two = (json.loads((results[r][0] / target).read_text()) for r in (1, 2))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["steps"] == two["steps"] == reduced_toy_config()["train"]["stage1"]["max_steps"]
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-4)
    losses = [_losses(results[r][0] / "results/stage1/2b_clip/train_log.jsonl") for r in (1, 2)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    _assert_same_tensors(results[1][0] / "results/stage1/2b_clip/connector.safetensors",
                         results[2][0] / "results/stage1/2b_clip/connector.safetensors")



def _losses(train_log: Path) -> list[float]:
    return [entry["loss"] for entry in map(json.loads, train_log.read_text().splitlines()) if "loss" in entry]


def _assert_same_tensors(a: Path, b: Path) -> None:
    import torch
    from safetensors.torch import load_file

    left, right = load_file(a), load_file(b)
    assert left.keys() == right.keys()
    for name in left:
        torch.testing.assert_close(right[name], left[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_failing_job_is_reported_with_its_log_and_keep_going_finishes_the_others(slurm_study):
    workdir, first = slurm_study
    if first.returncode != 0:
        pytest.skip("the SLURM study itself failed (see the first test)")
    broken = "2b_dinov2_pretrain"
    weights = workdir / f"results/cells/{broken}/model/model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"not a safetensors file")  # a corrupt checkpoint, planted on purpose
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: Snakemake plans no retraining
    for cell in CELLS:
        shutil.rmtree(workdir / f"results/cells/{cell}/eval/pope")

    deleted = [f"results/cells/{cell}/eval/pope/metrics.json" for cell in CELLS]
    run = run_workflow(workdir, "--keep-going", "--", "all", *deleted)
    assert run.returncode != 0, run.tail()
    assert len(run.failures) == 1 and run.failures[0].rule.startswith("evaluate"), run.tail()
    failure = run.failures[0]
    # The rule's own log (logs/eval/<cell>/pope.log, or logs/eval/<cell>.log with one job per cell).
    logs = [p for p in failure.logs if p.startswith(f"logs/eval/{broken}")]
    assert logs, failure
    assert (workdir / logs[0]).read_text().strip(), "the failed job's log is empty"
    assert any(".snakemake/slurm_logs/" in p for p in failure.logs), failure  # the SLURM job's own log
    assert finished_jobs()[failure.slurm_id].state == "FAILED"
    for cell in CELLS:
        done = (workdir / f"results/cells/{cell}/eval/pope/metrics.json").exists()
        assert done == (cell != broken), f"{cell}: metrics {'written' if done else 'missing'}"
