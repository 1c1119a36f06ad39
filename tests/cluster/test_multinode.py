"""Several nodes for real, on one machine: one TrainingJob run as 2 nodes × 1 process — two
separate ``torchrun`` process groups meeting through a c10d rendezvous on 127.0.0.1, as two hosts
would start it — trains exactly the same weights as 1 node × 2 processes: with a c10d rendezvous
(``--node_rank 0`` and ``1``), with the exported sbatch script's per-node command under the
variables srun sets, and with the exported TrainJob's command under the ``PET_*`` variables
Kubeflow Trainer's torch plugin sets in each node's pod (torchrun's static rendezvous)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from train_helpers import DATA, IRIS_DATASET, IRIS_JOB, IRIS_MODEL, merge, write_manifests

from lmspec.cluster import export
from lmspec.train.world import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                "CROSS_RANK", "LOCAL_WORLD_SIZE")
TIMEOUT = 240  # seconds; one run takes ~15 s on an idle 2-core machine
ALLOW = ("--allow-outside", str(DATA))
"""The job reads the checkout's iris.csv by absolute path, outside its own tree (the exported
commands allow it themselves)."""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in LAUNCHER_ENV and not k.startswith(("SLURM_", "PET_"))}
    # torchrun --no-python starts the `lmspec` executable: the one beside this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1", **extra}


def _run_all(cmds: list[list[str]], envs: list[dict[str, str]], cwd: Path) -> None:
    """Start every command at once (the nodes of one job), wait for all, fail with their output."""
    procs = [subprocess.Popen(c, env=e, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for c, e in zip(cmds, envs, strict=True)]
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for q in procs:
                os.killpg(q.pid, signal.SIGKILL)
            pytest.fail(f"{p.args!r} ran over {TIMEOUT}s")
        outs.append(out)
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-4000:]


def _weights(run_dir: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    return dict(load_file(run_dir / "export" / "model.safetensors"))


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding an iris job planned as 2 nodes × 1 process (6 optimizer steps) and a
    service of its model."""
    root = tmp_path_factory.mktemp("multinode")
    spec = {"resources": {"nodes": 2, "processesPerNode": 1}, "stopping": {"epochs": 2},
            "batch": {"microBatchSize": 8, "gradientAccumulationSteps": 1, "globalBatchSize": 16},
            "output": {"dir": "runs/{name}"}}
    service = {"apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "iris"},
               "spec": {"model": {"trainingJob": "job"}, "server": {"gracePeriodSeconds": 1.0}}}
    write_manifests(root / "job", IRIS_DATASET, IRIS_MODEL, merge(IRIS_JOB, {"spec": spec}), service)
    return root


@pytest.fixture(scope="module")
def one_node(job: Path) -> dict[str, object]:
    """The reference: one torchrun starting both processes."""
    cmd = ["torchrun", "--standalone", "--nnodes", "1", "--nproc_per_node", "2", "--no-python",
           "lmspec", "run", "job/manifests.yaml", "--output", "one-node", *ALLOW]
    _run_all([cmd], [_env()], job)
    return _weights(job / "one-node")


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    import torch

    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k  # type: ignore[arg-type]


def test_two_nodes_c10d_rendezvous(job: Path, one_node: dict[str, object]) -> None:
    port = free_port()
    cmds = [["torchrun", "--nnodes", "2", "--node_rank", str(rank), "--nproc_per_node", "1",
             "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "two-nodes",
             "--no-python", "lmspec", "run", "job/manifests.yaml", "--output", "two-nodes", *ALLOW]
            for rank in (0, 1)]
    _run_all(cmds, [_env(), _env()], job)
    _same(_weights(job / "two-nodes"), one_node)


def test_sbatch_node_command_on_two_nodes(job: Path, one_node: dict[str, object],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported script's per-node command, under the variables srun sets on each node."""
    monkeypatch.chdir(job)
    (script,) = export("slurm", ["job"]).values()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    line = next(x for x in script.splitlines() if x.startswith("NODE_COMMAND="))
    node_command = shlex.split(line.split("=", 1)[1])[0]
    port = str(free_port())
    envs = [_env(SLURM_JOB_ID="4242", SLURM_NNODES="2", SLURM_NODEID=str(n), SLURM_PROCID=str(n),
                 SLURM_NTASKS="2", SLURM_LOCALID="0", SLURM_JOB_NODELIST="localhost",
                 MASTER_ADDR="127.0.0.1", MASTER_PORT=port) for n in (0, 1)]
    _run_all([["bash", "-c", node_command]] * 2, envs, job)
    # output.dir is relative to the manifests' directory (job/job), wherever sbatch runs.
    _same(_weights(job / "job" / "runs" / "job"), one_node)


def test_trainjob_command_in_two_pods_then_kserve_container(
        job: Path, one_node: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported TrainJob's command, in two "pods" laid out as Trainer lays them out: the
    ConfigMap's manifests mounted in the workspace, the working directory the workspace (here a
    temporary directory standing for /workspace), and the PET_* variables of the torch plugin.
    Then the exported KServe container serves the result from the same workspace."""
    monkeypatch.chdir(job)
    (text,) = export("kubeflow", ["job"], image="lmspec-runner:test").values()
    _, cm, trainjob = list(yaml.safe_load_all(text))
    trainer = trainjob["spec"]["trainer"]
    mounts = trainjob["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
        "replicatedJobs"][-1]["template"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    (manifest_mount,) = [m for m in mounts if m["name"] == "lmspec-manifests"]
    port = str(free_port())
    cmds, envs = [], []
    for node in (0, 1):
        workspace = job / f"pod-{node}" / "workspace"
        mounted = workspace / Path(manifest_mount["mountPath"]).relative_to("/workspace")
        mounted.parent.mkdir(parents=True)
        mounted.write_text(cm["data"][manifest_mount["subPath"]])
        # The job names its data by absolute path (as on a file system every node mounts).
        needed = cm["metadata"]["annotations"]["lmspec.io/needs-files"].split(",")
        assert needed and all(Path(n).is_absolute() and Path(n).is_file() for n in needed), needed
        command = [c.replace("/workspace", str(workspace)) for c in trainer["command"]]
        cmds.append(["bash", "-c", f"cd {shlex.quote(str(workspace))} && exec {shlex.join(command)}"])
        envs.append(_env(**{e["name"]: e["value"] for e in trainer["env"]},
                         PET_NNODES=str(trainer["numNodes"]), PET_NPROC_PER_NODE=str(trainer["numProcPerNode"]),
                         PET_NODE_RANK=str(node), PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=port))
    _run_all(cmds, envs, job)
    # Rank 0 (node 0) wrote the run directory in its workspace, where output.dir points.
    _same(_weights(job / "pod-0" / "workspace" / "runs" / "job"), one_node)

    # The KServe predictor container, run in the same workspace, serves what the job exported
    # and answers the probes the InferenceService declares.
    (text,) = export("kserve", ["job"], image="lmspec-runner:test").values()
    isvc = list(yaml.safe_load_all(text))[-1]
    container = isvc["spec"]["predictor"]["containers"][0]
    port = free_port()
    workspace = job / "pod-0" / "workspace"
    args = [a.replace("/workspace", str(workspace)) for a in container["args"]]
    args[args.index("--port") + 1] = str(port)  # 8080 in the pod; any free port here
    args[args.index("--host") + 1] = "127.0.0.1"
    server = subprocess.Popen(["lmspec", *args], cwd=workspace, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        ready = container["readinessProbe"]["httpGet"]["path"]
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(base + ready, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.5)
        with urllib.request.urlopen(base + container["startupProbe"]["httpGet"]["path"], timeout=5) as r:
            assert r.status == 200
        body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
        served = args[args.index("--service") + 1]
        request = urllib.request.Request(f"{base}/v2/models/{served}/infer", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            answer = json.loads(r.read())
        assert answer["outputs"][0]["shape"] == [1, 3]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.communicate()
