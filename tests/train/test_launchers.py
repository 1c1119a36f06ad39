"""Where ranks come from: joining torchrun and Slurm worlds, hostfiles, and the checks of the
actual world against the job (global batch, resumed checkpoints, devices) before training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from train_helpers import IRIS_DATASET, IRIS_JOB, IRIS_MODEL, iris_job, merge, write_manifests

from lmspec.cli import main
from lmspec.model.export import load_exported
from lmspec.train.check import read_check_sample
from lmspec.train.launch import launcher_command
from lmspec.train.plan import Plan, plan_world, read_hostfile
from lmspec.train.rundir import RunError
from lmspec.train.world import World, free_port, under_launcher

LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                "CROSS_RANK", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")

# Planned for two processes, global batch stated: 8 × 2 × 2 = 32. Two epochs are 6 steps.
TWO_PLANNED: dict[str, Any] = {"resources": {"processesPerNode": 2}, "stopping": {"epochs": 2},
                               "batch": {"microBatchSize": 8, "gradientAccumulationSteps": 2,
                                         "globalBatchSize": 32}}


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any launcher's variables (the tests may run under one)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    return {**env, **extra}


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCHER_ENV:
        monkeypatch.delenv(name, raising=False)


def _check_export(run_dir: Path, out: str) -> None:
    """One world of two trained once, and its export reproduces the trained predictions."""
    assert out.count("lmspec: trained") == 1, out
    lock = json.loads((run_dir / "lock.json").read_text())
    assert lock["worldSize"] == 2
    exported = load_exported(run_dir / "export")
    sample = read_check_sample(run_dir)
    with torch.no_grad():
        got = exported.model(torch.from_numpy(sample.inputs)).numpy()
    np.testing.assert_allclose(sample.select(got), sample.outputs, rtol=0, atol=1e-6)


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    # A session of its own: on timeout the whole tree goes, ranks included.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    """(exit status, output) of a process started by :func:`_start`."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{proc.args!r} ran over {timeout}s:\n{out[-3000:]}")
    return proc.returncode, out


def _run(*args: str) -> tuple[int, str]:
    """``lmspec ARGS`` in this process: (exit code, stdout + stderr)."""
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


# --- joining a launcher's world ----------------------------------------------------------------


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """``torchrun --nproc_per_node 2 -m lmspec run``, each rank an ``lmspec run``: (run
    directory, exit status, output)."""
    manifests, run_dir = iris_job(tmp_path_factory.mktemp("torchrun"), **TWO_PLANNED)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lmspec", "run", str(manifests)]
    return (run_dir, *_finish(_start(cmd, _clean_env())))


@pytest.mark.integration
def test_torchrun_ranks_join_one_world(torchrun_run: tuple[Path, int, str]) -> None:
    run_dir, status, out = torchrun_run
    assert status == 0, out[-3000:]
    _check_export(run_dir, out)
    # No deepspeed launcher inside torchrun's ranks (it would log its command and world info).
    assert "deepspeed.launcher" not in out and "WORLD INFO DICT" not in out, out[-3000:]
    # The world matched the plan: no note about the global batch.
    assert "instead of the planned" not in out
    marker = json.loads((run_dir / "checkpoints" / "step6" / "COMPLETE").read_text())
    digests = marker.pop("files")
    assert marker == {"step": 6, "worldSize": 2, "zeroStage": 0}
    assert digests and all(len(d) == 64 for d in digests.values())


@pytest.mark.integration
def test_slurm_tasks_join_one_world(tmp_path: Path) -> None:
    """Two tasks as ``srun -n 2`` starts them: SLURM_* and MASTER_*, no RANK/WORLD_SIZE. The job
    plans one process and states no global batch: it follows the world, and rank 0 says so."""
    manifests, run_dir = iris_job(tmp_path, stopping={"epochs": 2})
    port = str(free_port())
    procs = [_start([sys.executable, "-m", "lmspec", "run", str(manifests)],
                    _clean_env(SLURM_PROCID=str(r), SLURM_LOCALID=str(r), SLURM_NTASKS="2",
                               MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(2)]
    outs = []
    for p in procs:
        status, out = _finish(p)
        outs.append(out)
        assert status == 0, out[-3000:]
    _check_export(run_dir, "".join(outs))
    notes = [line for line in outs[0].splitlines() if "instead of the planned" in line]
    assert notes == ["lmspec: training with 2 processes (Slurm, world size 2) instead of the planned "
                     "resources.nodes 1 × resources.processesPerNode 1 = 1 process; the global batch is "
                     "microBatchSize 8 × gradientAccumulationSteps 2 × 2 processes = 32"]
    assert "instead of the planned" not in outs[1]


def test_a_single_slurm_task_is_not_a_world(no_launcher: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch script (or ``srun -n 1``) may start its own ranks with --nproc."""
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert not under_launcher() and World.from_env() == World(0, 0, 1)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert under_launcher() and World.from_env() == World(3, 0, 4, "Slurm")


def test_slurm_world_without_rendezvous_is_refused(tmp_path: Path, no_launcher: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    manifests, _ = iris_job(tmp_path)
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    code, out = _run("run", str(manifests))
    assert code == 1
    assert "rank 1 of 2 (Slurm) needs MASTER_ADDR and MASTER_PORT" in _one_error_line(out)


@pytest.mark.parametrize("option", [["--nproc", "2"], ["--hostfile", "hosts"]])
def test_a_joined_rank_takes_no_launch_options(tmp_path: Path, no_launcher: None,
                                               monkeypatch: pytest.MonkeyPatch, option: list[str]) -> None:
    manifests, _ = iris_job(tmp_path)
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    code, out = _run("run", str(manifests), *option)
    assert code == 1
    assert f"{option[0]} cannot be used here" in _one_error_line(out)


# --- hostfiles ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_hostfile_naming_this_machine_trains_here(tmp_path: Path) -> None:
    """DeepSpeed alone would insist on ssh to localhost; one local host means local ranks."""
    manifests, run_dir = iris_job(tmp_path, **TWO_PLANNED)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# this machine only\n\nlocalhost slots=2\n")
    status, out = _finish(_start([sys.executable, "-m", "lmspec", "run", str(manifests), "--hostfile", str(hostfile)],
                                 _clean_env()))
    assert status == 0, out[-3000:]
    _check_export(run_dir, out)
    assert "ssh" not in out


@pytest.mark.parametrize(("text", "expected"), [
    (None, "hostfile {f}: no such file"),
    ("", "hostfile {f} lists no hosts"),
    ("# only a comment\n", "hostfile {f} lists no hosts"),
    ("localhost 2\n", "{f}:1: expected 'HOST slots=N'"),
    ("a slots=2\nb slots=two\n", "{f}:2: expected 'HOST slots=N'"),
    ("a slots=0\n", "{f}:1: host 'a' has slots=0"),
    ("a slots=1\n\na slots=2\n", "{f}:3: host 'a' is listed twice (first on line 1)"),
])
def test_bad_hostfiles_are_one_line(tmp_path: Path, no_launcher: None, text: str | None, expected: str) -> None:
    manifests, run_dir = iris_job(tmp_path)
    hostfile = tmp_path / "hosts"
    if text is not None:
        hostfile.write_text(text)
    code, out = _run("run", str(manifests), "--hostfile", str(hostfile))
    assert code == 1
    assert expected.format(f=hostfile) in _one_error_line(out)
    assert not (run_dir / "lock.json").exists()


def test_a_hostfile_that_is_a_directory(tmp_path: Path, no_launcher: None) -> None:
    manifests, _ = iris_job(tmp_path)
    code, out = _run("run", str(manifests), "--hostfile", str(tmp_path))
    assert code == 1 and "is a directory, not a file" in _one_error_line(out)


def test_hostfile_worlds_agree_with_deepspeed(tmp_path: Path, no_launcher: None) -> None:
    """The world planned from a hostfile is the one DeepSpeed's own runner resolves from it."""
    from deepspeed.launcher import runner

    hostfile = tmp_path / "hosts"
    hostfile.write_text("# rack 1\nworker-1 slots=4   # the big one\nworker-2 slots=2\n")
    spec = _spec()
    for nproc in (None, 1, 2):
        plan = plan_world(spec, nproc=nproc, hostfile=str(hostfile))
        pool = runner.fetch_hostfile(str(hostfile))
        active = runner.apply_num_nodes_and_gpus(runner.parse_inclusion_exclusion(pool, "", ""), -1, nproc or -1)
        assert plan.mode == "hosts" and plan.world_size == sum(len(s) for s in active.values()), nproc
    with pytest.raises(RunError, match=r"--nproc 3 asks for more processes than host 'worker-2' has slots"):
        plan_world(spec, nproc=3, hostfile=str(hostfile))
    assert [h.name for h in read_hostfile(hostfile)] == list(pool)


def _spec() -> Any:
    from lmspec.v1alpha1 import TrainingJob

    return TrainingJob.model_validate(IRIS_JOB).spec


@pytest.mark.parametrize("nproc", [None, 2])
def test_multi_host_launcher_command(tmp_path: Path, no_launcher: None, nproc: int | None) -> None:
    """Several machines: DeepSpeed's runner accepts the command, and the pdsh command it would run
    on every host starts this package's worker with the job's absolute paths."""
    from deepspeed.launcher import runner
    from deepspeed.launcher.multinode_runner import PDSHRunner

    hostfile = tmp_path / "hosts"
    hostfile.write_text("worker-1 slots=4\nworker-2 slots=4\n")
    plan = plan_world(_spec(), nproc=nproc, hostfile=str(hostfile))
    worker_args = ["/shared/job.yaml", "--job", "job", "--output", "/shared/runs/job", "--resume"]
    cmd = launcher_command(plan, worker_args, python="/opt/venv/bin/python")
    assert cmd[:4] == ["/opt/venv/bin/python", "-u", "-m", "deepspeed.launcher.runner"]
    assert "--master_port" not in cmd  # the first host's port, not one free here
    assert ("--num_gpus" in cmd) == (nproc is not None) and "--force_multi" not in cmd

    args = runner.parse_args(cmd[4:])
    assert (args.hostfile, args.launcher, args.num_gpus) == (str(hostfile.resolve()), "pdsh", nproc or -1)
    assert args.module and args.no_local_rank and not args.force_multi
    assert (args.user_script, args.user_args) == ("lmspec.train.worker", worker_args)
    active = runner.apply_num_nodes_and_gpus(
        runner.parse_inclusion_exclusion(runner.fetch_hostfile(args.hostfile), "", ""), -1, args.num_gpus)
    args.master_addr = "10.0.0.1"  # what DeepSpeed asks the first host for over ssh
    pdsh, _, _ = PDSHRunner(args, runner.encode_world_info(active)).get_cmd({}, active)
    assert pdsh[:5] == ["pdsh", "-S", "-f", "1024", "-w"] and pdsh[5] == "worker-1,worker-2"
    assert pdsh[-len(worker_args) - 1:] == ["lmspec.train.worker", *worker_args]
    assert {"--module", "--no_local_rank", "--master_addr=10.0.0.1"} <= set(pdsh)


def test_one_remote_host_is_still_remote(tmp_path: Path, no_launcher: None) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("gpu-box slots=8\n")
    plan = plan_world(_spec(), nproc=None, hostfile=str(hostfile))
    assert (plan.mode, plan.world_size) == ("hosts", 8)
    assert "--force_multi" in launcher_command(plan, ["job.yaml"])


def test_local_launcher_command() -> None:
    cmd = launcher_command(Plan("local", 3, "--nproc 3"), ["a.yaml", "--job", "j"], python="py", master_port=1234)
    assert cmd == ["py", "-u", "-m", "deepspeed.launcher.runner", "--master_port", "1234", "--no_local_rank",
                   "--num_nodes", "1", "--num_gpus", "3", "--log_level", "error",
                   "--module", "lmspec.train.worker", "a.yaml", "--job", "j"]
    # The launcher accepts it (older DeepSpeed than pyproject.toml allows would not).
    from deepspeed.launcher import runner

    args = runner.parse_args(cmd[4:])
    assert (args.log_level, args.num_gpus, args.user_script) == ("error", 3, "lmspec.train.worker")


def test_several_hosts_need_pdsh(tmp_path: Path, no_launcher: None, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests, _ = iris_job(tmp_path)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("worker-1 slots=1\nworker-2 slots=1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no pdsh on the search path
    code, out = _run("run", str(manifests), "--hostfile", str(hostfile))
    assert code == 1 and "through pdsh, which is not installed here" in _one_error_line(out)


# --- the actual world against the job ----------------------------------------------------------


@pytest.mark.parametrize(("how", "actual"), [("nproc", 1), ("hostfile", 3), ("torchrun", 4)])
def test_a_stated_global_batch_needs_the_planned_world(tmp_path: Path, no_launcher: None,
                                                       monkeypatch: pytest.MonkeyPatch, how: str, actual: int) -> None:
    manifests, run_dir = iris_job(tmp_path, **TWO_PLANNED)
    args = ["run", str(manifests)]
    if how == "nproc":
        args += ["--nproc", str(actual)]
    elif how == "hostfile":
        (tmp_path / "hosts").write_text(f"localhost slots={actual}\n")
        args += ["--hostfile", str(tmp_path / "hosts")]
    else:
        for k, v in {"RANK": "0", "WORLD_SIZE": str(actual), "LOCAL_RANK": "0", "TORCHELASTIC_RUN_ID": "x",
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
            monkeypatch.setenv(k, v)
    code, out = _run(*args)
    assert code == 1
    line = _one_error_line(out)
    line_no = next(i for i, text in enumerate(manifests.read_text().splitlines(), 1) if "globalBatchSize" in text)
    assert f"{manifests}:{line_no}: batch.globalBatchSize 32 was planned for resources.nodes 1 × " \
           f"resources.processesPerNode 2 = 2 processes, but this run has {actual}" in line
    assert f"gradientAccumulationSteps 2 × {actual} process{'es' if actual > 1 else ''} = {16 * actual};" in line
    assert not (run_dir / "lock.json").exists()


@pytest.mark.parametrize("nproc", ["0", "-2"])
def test_nproc_must_be_positive(tmp_path: Path, no_launcher: None, nproc: str) -> None:
    manifests, _ = iris_job(tmp_path)
    code, out = _run("run", str(manifests), "--nproc", nproc)
    assert code == 1 and f"--nproc must be at least 1, not {nproc}" in _one_error_line(out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_job_on_a_machine_without_cuda(tmp_path: Path, no_launcher: None) -> None:
    manifests, run_dir = iris_job(tmp_path, resources={"accelerator": "cuda"})
    code, out = _run("run", str(manifests), "--nproc", "2")
    assert code == 1
    assert "resources.accelerator is cuda, but torch" in _one_error_line(out)
    assert not (run_dir / "lock.json").exists()


# --- resuming in another world ---------------------------------------------------------------


def _same_run(directory: Path, run_dir: Path, **job_spec: Any) -> Path:
    """Manifests for the torchrun run's output directory, with the job patched."""
    job = merge(IRIS_JOB, {"spec": {**TWO_PLANNED, **job_spec, "output": {"dir": str(run_dir)}}})
    if job["spec"]["batch"].get("globalBatchSize") is None:
        job["spec"]["batch"].pop("globalBatchSize", None)
    return write_manifests(directory, IRIS_DATASET, IRIS_MODEL, job)


@pytest.mark.integration
def test_resume_in_another_world_is_refused(tmp_path: Path, no_launcher: None,
                                            torchrun_run: tuple[Path, int, str]) -> None:
    run_dir, status, _ = torchrun_run
    assert status == 0
    # Fewer processes (no global batch stated, so only the checkpoint stands in the way).
    manifests = _same_run(tmp_path / "fewer", run_dir, batch={"globalBatchSize": None})
    code, out = _run("run", str(manifests), "--nproc", "1", "--resume")
    assert code == 1
    assert (f"cannot resume from {run_dir / 'checkpoints' / 'step6'}: it was written by 2 processes at ZeRO "
            "stage 0, and this run has 1 at stage 0") in _one_error_line(out)
    assert "Resume with 2 processes and zero.stage 0, or train from scratch without --resume" in out
    # Another ZeRO stage, same world; checkpointing.resume asks for it as --resume does.
    manifests = _same_run(tmp_path / "stage", run_dir, zero={"stage": 2}, checkpointing={"resume": True})
    code, out = _run("run", str(manifests))
    assert code == 1 and "and this run has 2 at stage 2" in _one_error_line(out)


@pytest.mark.integration
def test_a_rank_refuses_a_checkpoint_of_another_world(
        tmp_path: Path, torchrun_run: tuple[Path, int, str]) -> None:
    """The ranks check too, before DeepSpeed loads anything (here one started directly)."""
    run_dir, status, _ = torchrun_run
    assert status == 0
    manifests = _same_run(tmp_path, run_dir, batch={"globalBatchSize": None})
    status, out = _finish(_start([sys.executable, "-m", "lmspec.train.worker", str(manifests), "--job", "job",
                                  "--output", str(run_dir), "--resume"], _clean_env()))
    assert status == 1
    assert "Traceback" not in out
    assert "lmspec: error: cannot resume from" in out and "written by 2 processes" in out
    assert json.loads((run_dir / "lock.json").read_text())["worldSize"] == 2  # left as it was
