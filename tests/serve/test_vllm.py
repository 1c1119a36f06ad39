"""``engine: vllm``: the vLLM command line generated from a manifest, clear refusals where vLLM
or CUDA is missing, lmspec's gateway relaying to an OpenAI-compatible server on loopback, and
(only where a GPU and the vllm package are present) a real vLLM behind the gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

import lmspec
from lmspec.domain.accelerators import cuda_present, vllm_installed
from lmspec.serve.vllm import vllm_args, vllm_env
from lmspec.v1alpha1 import InferenceService

HAS_VLLM_GPU = cuda_present() and vllm_installed()


def service(**spec: Any) -> InferenceService:
    return InferenceService.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "chat"},
        "spec": {"model": {"path": "export-hf"}, "protocols": ["openai"], **spec}})


def test_vllm_arguments_follow_the_manifest(tmp_path: Path) -> None:
    s = service(engine={"name": "vllm", "maxModelLength": 2048, "maxSequences": 64,
                        "kvCacheTokens": 65_000, "prefillChunkTokens": 1024},
                placement={"device": "cuda", "deviceIndices": [2, 3], "dtype": "bfloat16"})
    args = vllm_args(s.spec, tmp_path, name="chat", port=8100, key="k")
    assert args == ["serve", str(tmp_path), "--host", "127.0.0.1", "--port", "8100", "--api-key", "k",
                    "--served-model-name", "chat", "--dtype", "bfloat16", "--max-num-seqs", "64",
                    "--enable-chunked-prefill", "--max-num-batched-tokens", "1024", "--block-size", "16",
                    "--tensor-parallel-size", "2", "--max-model-len", "2048",
                    "--num-gpu-blocks-override", "4063"]  # ceil(65000 / 16)
    assert vllm_env(s.spec)["CUDA_VISIBLE_DEVICES"] == "2,3"
    defaults = vllm_args(service(engine={"name": "vllm"}, placement={"device": "cuda"}).spec, tmp_path,
                         name="chat", port=1, key="k")
    assert "--max-model-len" not in defaults and "--num-gpu-blocks-override" not in defaults
    assert defaults[defaults.index("--tensor-parallel-size") + 1] == "1"
    assert defaults[defaults.index("--dtype") + 1] == "auto"


def test_a_lora_adapter_is_served_on_its_base(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "../base"}))
    args = vllm_args(service(engine={"name": "vllm"}, placement={"device": "cuda"}).spec, adapter,
                     name="chat", port=1, key="k")
    assert args[1] == str(adapter / "../base")
    assert args[args.index("--served-model-name") + 1] == "chat-base"
    assert args[-3:] == ["--enable-lora", "--lora-modules", f"chat={adapter}"]


@pytest.mark.integration
@pytest.mark.skipif(HAS_VLLM_GPU, reason="vLLM and a CUDA device are present here")
def test_validator_and_serve_say_vllm_cannot_run_here(tmp_path: Path) -> None:
    doc = service(engine={"name": "vllm"}, placement={"device": "cuda"}).model_dump(
        mode="json", by_alias=True, exclude_unset=True)
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert lmspec.validate([str(path)]).ok
    report = lmspec.validate([str(path)], check_env=True)
    found = [f for f in report.findings if f.rule == "env.engine-unavailable"]
    assert found and all("builtin" in f.hint for f in found), report.findings
    (tmp_path / "export-hf").mkdir()
    (tmp_path / "export-hf" / "config.json").write_text("{}")
    r = subprocess.run([sys.executable, "-m", "lmspec", "serve", str(path), "--port", "0"],
                       capture_output=True, text=True, timeout=120)
    # The server's pre-flight is the validator's environment layer: the same finding, exit 1 as
    # for any invalid input.
    assert r.returncode == 1 and "env.engine-unavailable" in r.stderr and "engine.name: builtin" in r.stderr
    assert "Traceback" not in r.stderr


class ThreadServer:
    """An ASGI app served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def gateway(start: Any, exports: dict[str, Path]) -> Iterator[Any]:
    """lmspec's gateway (as ``engine: vllm`` runs it) in front of an OpenAI-compatible server: here
    a real ``lmspec serve`` with a key of its own stands in for vLLM's server."""
    from lmspec.engine.predictor import Loaded
    from lmspec.serve.app import create_app
    from lmspec.serve.vllm import Upstream

    os.environ["LMSPEC_TEST_UPSTREAM_KEY"] = "upstream-secret"
    upstream = start("chat", exports["lm"], protocols=["openai"], key="upstream-secret",
                     auth={"apiKeys": [{"env": "LMSPEC_TEST_UPSTREAM_KEY"}]},
                     generation={"temperature": 0.0})
    s = service(engine={"name": "vllm"}, placement={"device": "cuda"})
    app, state = create_app(s, lambda: Loaded(None, upstream=Upstream(upstream.url, "upstream-secret")),
                            keys=["gateway-key"])
    server = ThreadServer(app)
    deadline = time.monotonic() + 30
    while not state.ready and time.monotonic() < deadline:
        time.sleep(0.02)
    yield server, upstream
    server.stop()


@pytest.mark.integration
def test_gateway_relays_with_its_own_auth_and_metrics(gateway: Any) -> None:
    server, upstream = gateway
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert httpx.get(server.url + "/v1/models",
                     headers={"Authorization": "Bearer upstream-secret"}).status_code == 401
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="gateway-key", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["chat"]
    direct = upstream.client.post("/v1/completions", json={"model": "chat", "prompt": "Hello", "max_tokens": 8})
    relayed = client.completions.create(model="chat", prompt="Hello", max_tokens=8)
    assert relayed.choices[0].text == direct.json()["choices"][0]["text"]
    streamed = list(client.completions.create(model="chat", prompt="Hello", max_tokens=8, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == relayed.choices[0].text
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.completions.create(model="chat", prompt="x" * 300, max_tokens=1)
    metrics = httpx.get(server.url + "/metrics").text
    for status, count in (("200", 3), ("400", 1), ("401", 2)):
        assert f'lmspec_requests_total{{endpoint="/v1/{{path:path}}",status="{status}"}} {count}.0' in metrics
    assert "lmspec_time_to_first_token_seconds_count 1.0" in metrics


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not HAS_VLLM_GPU, reason="needs a CUDA device and the vllm package (GPU machines only)")
def test_real_vllm_behind_the_gateway(start: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hf_models", Path(__file__).with_name("hf_models.py"))
    assert spec is not None and spec.loader is not None
    hf_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hf_models)
    model = hf_models.llama_dir(tmp_path_factory.mktemp("vllm") / "llama", width=256, layers=2)
    server = start("vllm-chat", model, protocols=["openai"], engine={"name": "vllm", "maxModelLength": 512},
                   placement={"device": "cuda"}, generation={"temperature": 0.0})
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model="vllm-chat", messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=8)
    assert r.usage is not None and r.usage.completion_tokens <= 8
    assert sum(1 for _ in client.completions.create(model="vllm-chat", prompt="Hi", max_tokens=8,
                                                    stream=True)) >= 2
