"""Experiment trackers: TensorBoard and MLflow, fed the records of ``metrics.jsonl``.

>>> trackers = open_trackers(job.spec.logging, run_dir, job_name="iris-train")  # rank 0 only
>>> trackers.log("train", 10, {"loss": 0.41}, {"lr": 0.01, "samples_per_s": 950.0})
>>> trackers.artifacts(run_dir)            # lock, rendered manifests, summary, export
>>> trackers.close(failed=False)

A tracker never stops training: the first exception a tracker raises is reported once on stderr,
and that tracker is switched off for the rest of the run.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from ..standard import Logging

NUMERIC_EXTRA = ("lr", "samples_per_s", "epoch")
"""Fields of a metrics record, besides the metric values, that trackers also chart."""

ARTIFACT_FILES = ("lock.json", "rendered.yaml", "summary.json", "metrics.jsonl")


class Tracker:
    """One tracking backend; subclasses override what they support."""

    name = "tracker"

    def log(self, split: str, step: int, values: dict[str, float]) -> None:
        """Record ``values`` (already including the numeric extras) at ``step``."""

    def artifacts(self, run_dir: Path) -> None:
        """Upload the run's files, at the end of a successful run."""

    def close(self, *, failed: bool) -> None:
        """Flush and finish."""


class TensorBoardTracker(Tracker):
    name = "TensorBoard"

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def log(self, split: str, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"{split}/{k}", v, step)

    def close(self, *, failed: bool) -> None:
        self.writer.close()


def flat_params(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Rendered manifests → MLflow parameters: ``trainingjob.optimizer.lr`` → ``"0.01"``.

    Leaves are JSON-encoded (lists stay one parameter); keys are ``<kind>.<path in spec>``."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            out[prefix] = value if isinstance(value, str) else json.dumps(value)

    for doc in docs:
        walk(str(doc.get("kind", "manifest")).lower(), doc.get("spec", {}))
    return out


class MlflowTracker(Tracker):
    """One MLflow run per training run, through MLflow's own client."""

    name = "MLflow"

    def __init__(self, uri: str, experiment: str, run_dir: Path, run_name: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            # A local store keeps artefacts beside it; a server decides where they go.
            local = uri.startswith(("sqlite:", "file:"))
            experiment_id = self.client.create_experiment(
                experiment, artifact_location=(run_dir / "mlartifacts").as_uri() if local else None)
        self.run_id: str = self.client.create_run(
            experiment_id, run_name=run_name, tags={"lmspec.runDir": str(run_dir)}).info.run_id
        rendered = run_dir / "rendered.yaml"
        if rendered.is_file():
            from mlflow.entities import Param

            docs = [d for d in yaml.safe_load_all(rendered.read_text()) if isinstance(d, dict)]
            params = [Param(k, v[:6000]) for k, v in flat_params(docs).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a batch
                self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log(self, split: str, step: int, values: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"{split}.{k}", float(v), now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def artifacts(self, run_dir: Path) -> None:
        for name in ARTIFACT_FILES:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        if (run_dir / "export").is_dir():
            self.client.log_artifacts(self.run_id, str(run_dir / "export"), artifact_path="export")

    def close(self, *, failed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class Trackers:
    """The trackers of a run; a tracker that raises is reported once and dropped."""

    def __init__(self, trackers: list[Tracker] | None = None) -> None:
        self.trackers = list(trackers or [])

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _each(self, call: str, *args: Any, **kwargs: Any) -> None:
        for t in list(self.trackers):
            try:
                getattr(t, call)(*args, **kwargs)
            except Exception as exc:
                self.trackers.remove(t)
                failed(t.name, exc)

    def log(self, split: str, step: int, values: dict[str, float], extra: dict[str, Any]) -> None:
        numbers = {k: float(extra[k]) for k in NUMERIC_EXTRA if isinstance(extra.get(k), int | float)}
        self._each("log", split, step, {**values, **numbers})

    def artifacts(self, run_dir: Path) -> None:
        self._each("artifacts", run_dir)

    def close(self, *, failed: bool) -> None:
        self._each("close", failed=failed)
        self.trackers = []


def failed(name: str, exc: BaseException) -> None:
    """The one report of a tracker's failure."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = re.sub(r"://[^/@\s]+@", "://***@", message)  # credentials in a tracking URI
    print(f"lmspec: warning: {name} tracking failed ({type(exc).__name__}: {message[:300]}); "
          "training goes on without it", file=sys.stderr, flush=True)


def open_trackers(spec: Logging, run_dir: Path, *, job_name: str) -> Trackers:
    """The trackers a TrainingJob's ``spec.logging`` asks for (call on rank 0 only). One that
    cannot start is reported and left out."""
    trackers: list[Tracker] = []
    if spec.tensorboard:
        try:
            trackers.append(TensorBoardTracker(run_dir / "tensorboard"))
        except ImportError:
            print("lmspec: warning: logging.tensorboard is on but the tensorboard package is not "
                  "installed (pip install 'lmspec[run]'); writing metrics.jsonl only", file=sys.stderr)
        except Exception as exc:
            failed(TensorBoardTracker.name, exc)
    ml = spec.mlflow
    if ml.enabled:
        uri = os.environ.get(ml.tracking_uri_env) or f"sqlite:///{run_dir / 'mlflow.db'}"
        try:
            trackers.append(MlflowTracker(uri, ml.experiment or job_name, run_dir, job_name))
        except ImportError:
            print("lmspec: warning: logging.mlflow is on but the mlflow package is not installed "
                  "(pip install 'lmspec[mlflow]'); training goes on without it", file=sys.stderr)
        except Exception as exc:
            failed(MlflowTracker.name, exc)
    return Trackers(trackers)
