"""Fixtures for the server tests: real exports (built with ``save_export``, no DeepSpeed run) and
real ``lmspec serve`` processes on loopback, shared per module to keep the suite fast."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IRIS = ROOT / "examples" / "iris"

LM_MODEL: dict[str, Any] = {
    "apiVersion": "lmspec.io/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "tiny-lm"},
    "spec": {
        "task": "causal-lm",
        "architecture": {"type": "transformer", "vocabSize": 256, "contextLength": 256,
                         "width": 32, "depth": 1, "heads": 2},
        "signature": {
            "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, 256]}],
        },
    },
}


def iris_export(out: Path, *, steps: int = 150, hidden: list[int] | None = None) -> Path:
    """The iris MLP with real (briefly trained) weights and the Dataset's fitted transform."""
    import numpy as np
    import torch

    import lmspec
    from lmspec.data import prepare
    from lmspec.model.build import build_model
    from lmspec.model.export import save_export

    # The example's own manifests, never what running it leaves below the directory.
    manifests = lmspec.load([str(f) for f in sorted(IRIS.glob("*.yaml"))])
    dataset = manifests.get("Dataset", "iris")
    model_m = manifests.get("Model", "iris-mlp")
    assert dataset is not None and model_m is not None
    model_obj = model_m.obj
    if hidden is not None:
        arch = model_obj.spec.architecture.model_copy(update={"hidden_sizes": hidden})
        spec = model_obj.spec.model_copy(update={"architecture": arch})
        model_obj = model_obj.model_copy(update={"spec": spec})
    data = prepare(dataset.obj, dataset.base_dir, model_task="classification")
    torch.manual_seed(0)
    model = build_model(model_obj.spec)
    x = torch.from_numpy(np.asarray(data.train.inputs, dtype=np.float32))
    y = torch.from_numpy(np.asarray(data.train.targets, dtype=np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return save_export(out, model_obj, model.state_dict(), data.transform.state_dict(),
                       job="iris-train", metrics={})


def lm_export(out: Path, *, context_length: int = 256) -> Path:
    """A tiny randomly initialised byte-level transformer LM."""
    import torch

    from lmspec.data import Tokenizer, Transform
    from lmspec.model.build import build_model
    from lmspec.model.export import save_export
    from lmspec.v1alpha1 import Model

    doc = {**LM_MODEL, "spec": {**LM_MODEL["spec"], "architecture": {
        **LM_MODEL["spec"]["architecture"], "contextLength": context_length}}}
    manifest = Model.model_validate(doc)
    torch.manual_seed(0)
    model = build_model(manifest.spec)
    transform = Transform(task="causal-lm", feature_names=[], feature_dtypes=[],
                          tokenizer=Tokenizer.byte())
    return save_export(out, manifest, model.state_dict(), transform.state_dict(), job="tiny-lm",
                       metrics={})


def service_manifest(directory: Path, name: str, export: Path, **spec: Any) -> Path:
    """Write an InferenceService serving ``export`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService",
           "metadata": {"name": name},
           "spec": {"model": {"path": os.path.relpath(export, directory)}, **spec}}
    path = directory / "service.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Server:
    """A running ``lmspec serve`` process."""

    def __init__(self, manifest: Path, *, env: dict[str, str] | None = None,
                 key: str | None = None) -> None:
        self.log_path = manifest.parent / "server.log"
        self.log = self.log_path.open("w")
        self.key = key
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lmspec", "serve", str(manifest), "--port", "0"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=manifest.parent,
            env={**os.environ, **(env or {})})
        self.url = self._wait_for_url()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # Generous reads: a request may wait behind long generations on a loaded machine.
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(30, read=600))
        self.wait_ready()

    def output(self) -> str:
        return self.log_path.read_text()

    def _wait_for_url(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"listening on (http://\S+)", self.output())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.output()}")

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"server not ready:\n{self.output()}")

    def metric(self, name: str, **labels: str) -> float:
        """Value of one sample of ``/metrics`` (0 if absent)."""
        return self.metrics(name, **labels)[0]

    def metrics(self, *names: str, **labels: str) -> list[float]:
        """Values of several samples from ONE scrape, so they are consistent with each other."""
        text = self.client.get("/metrics").text
        return [self._sample(text, name, labels) for name in names]

    @staticmethod
    def _sample(text: str, name: str, labels: dict[str, str]) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
        found = re.search("^" + pattern + "$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def start_draining(self, late_body: dict[str, Any]) -> None:
        """SIGTERM the server and check it stops admitting: not ready, new requests get 503."""
        self.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        assert httpx.get(self.url + "/v2/health/ready").status_code == 503
        late = httpx.post(self.url + "/v1/completions", json=late_body)
        assert late.status_code == 503 and "shutting down" in late.json()["error"]["message"]
        assert late.headers["retry-after"] == "1" and late.headers["connection"] == "close"

    def stop(self) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    # lm-long: for generations longer than lm's context allows.
    return {"iris": iris_export(root / "iris"), "lm": lm_export(root / "lm"),
            "lm-long": lm_export(root / "lm-long", context_length=1024)}


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama-style model with a trained BPE tokenizer and a chat template, in Hugging
    Face format."""
    return hf_models().llama_dir(tmp_path_factory.mktemp("hf") / "llama")


def hf_models() -> Any:
    """``hf_models.py`` beside this file (shared with ``bench/generate.py``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hf_models", Path(__file__).with_name("hf_models.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(name="hf_models", scope="session")
def hf_models_fixture() -> Any:
    """:func:`hf_models`, for tests that make models of their own sizes."""
    return hf_models()


@pytest.fixture(name="service_manifest")
def service_manifest_fixture() -> Any:
    """:func:`service_manifest`, for tests."""
    return service_manifest


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start servers: ``start(name, export, key=..., env=..., **spec)``; stopped at module end."""
    servers: list[Server] = []

    def _start(name: str, export: Path, *, key: str | None = None,
               env: dict[str, str] | None = None, **spec: Any) -> Server:
        manifest = service_manifest(tmp_path_factory.mktemp(name), name, export, **spec)
        server = Server(manifest, env=env, key=key)
        servers.append(server)
        return server

    yield _start
    for s in servers:
        s.stop()
