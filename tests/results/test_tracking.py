"""Experiment tracking: a real 2-process DeepSpeed run logs to MLflow (read back with MLflow's
own client) and TensorBoard from rank 0 only; a tracker that cannot reach its server leaves the
run green with one warning."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from results_helpers import example_manifests, lmspec

from lmspec.train.tracking import Tracker, Trackers


def _tracked(spec: dict[str, Any]) -> None:
    spec["stopping"] = {"epochs": 2}
    spec["validation"] = {"metrics": ["loss", "accuracy"]}
    spec["checkpointing"] = {"interval": 4}
    spec["logging"] = {"interval": 1, "progressBar": False, "tensorboard": True,
                       "mlflow": {"enabled": True, "experiment": "iris-tracking"}}


def _records(run_dir: Path, split: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


@pytest.mark.integration
@pytest.mark.slow
def test_two_process_run_logs_to_mlflow_and_tensorboard(tmp_path: Path) -> None:
    tracking = pytest.importorskip("mlflow.tracking")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run_dir = tmp_path / "run"
    manifests = example_manifests("iris", tmp_path / "manifests", run_dir, _tracked)
    env = {"MLFLOW_TRACKING_URI": ""}  # unset: the local store in the run directory
    result = lmspec("run", str(manifests), "--nproc", "2", env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tracking failed" not in result.stderr

    client = tracking.MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("iris-tracking")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # rank 0 only
    run = runs[0]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["trainingjob.optimizer.lr"] == "0.01"
    assert params["model.architecture.hiddenSizes"] == "[32, 32]"
    assert params["dataset.target.classes"] == '["setosa", "versicolor", "virginica"]'
    train = _records(run_dir, "train")
    history = client.get_metric_history(run.info.run_id, "train.loss")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["loss"]) for r in train]
    lr = client.get_metric_history(run.info.run_id, "train.lr")
    assert [m.value for m in lr] == [r["lr"] for r in train]
    validation = _records(run_dir, "validation")
    accuracy = client.get_metric_history(run.info.run_id, "validation.accuracy")
    assert [m.value for m in accuracy] == [r["accuracy"] for r in validation]
    test = json.loads((run_dir / "summary.json").read_text())["test"]
    assert run.data.metrics["test.accuracy"] == test["accuracy"]
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"lock.json", "rendered.yaml", "summary.json", "metrics.jsonl", "export"} <= top
    exported = {a.path for a in client.list_artifacts(run.info.run_id, "export")}
    assert {"export/model.safetensors", "export/export.json", "export/transform.json"} <= exported
    local = Path(client.download_artifacts(run.info.run_id, "lock.json", str(tmp_path)))
    assert json.loads(local.read_text())["worldSize"] == 2

    events = accumulator.EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [s.step for s in scalars] == [r["step"] for r in train]
    assert [s.value for s in scalars] == pytest.approx([r["loss"] for r in train], rel=1e-6)  # stored as float32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


@pytest.mark.integration
@pytest.mark.slow
def test_unreachable_tracking_server_warns_once(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    run_dir = tmp_path / "run"

    def spec(s: dict[str, Any]) -> None:
        _tracked(s)
        s["logging"]["tensorboard"] = False
        s["logging"]["mlflow"]["trackingUriEnv"] = "TEAM_MLFLOW_URI"

    manifests = example_manifests("iris", tmp_path / "manifests", run_dir, spec)
    env = {"TEAM_MLFLOW_URI": f"http://127.0.0.1:{_free_port()}",
           # MLflow retries for minutes by default; keep the failed attempt short.
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    result = lmspec("run", str(manifests), env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("MLflow tracking failed") == 1, result.stderr[-3000:]
    assert (run_dir / "export" / "export.json").is_file()
    assert not (run_dir / "mlflow.db").exists()


class _Flaky(Tracker):
    """Fails on its second record, as a server that goes away mid-run would."""

    name = "Flaky"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def log(self, split: str, step: int, values: dict[str, float]) -> None:
        if self.seen:
            raise ConnectionError("server went away")
        self.seen.append(step)


class _Recorder(Tracker):
    def __init__(self) -> None:
        self.seen: list[tuple[int, dict[str, float]]] = []

    def log(self, split: str, step: int, values: dict[str, float]) -> None:
        self.seen.append((step, values))


def test_a_failing_tracker_is_reported_once_and_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    flaky, recorder = _Flaky(), _Recorder()
    trackers = Trackers([flaky, recorder])
    for step in (1, 2, 3):
        trackers.log("train", step, {"loss": 1.0 / step}, {"lr": 0.1, "epoch": 0, "note": "x"})
    trackers.close(failed=False)
    err = capsys.readouterr().err
    assert err.count("Flaky tracking failed (ConnectionError: server went away)") == 1
    assert flaky.seen == [1]
    assert [s for s, _ in recorder.seen] == [1, 2, 3]
    assert recorder.seen[0][1] == {"loss": 1.0, "lr": 0.1, "epoch": 0.0}  # numeric extras only
