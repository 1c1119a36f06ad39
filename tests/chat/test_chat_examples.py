"""The chat examples run as the README runs them, from the directory above ``examples/``: the
base is pretrained, fine-tuned with LoRA (ZeRO-2) and fully (ZeRO-3 with CPU offload) from its
export in a sibling directory, and the LoRA model is served with the base's chat template.

The jobs are cut to a few steps (minutes of training on a loaded 2-core machine otherwise),
which exercises every stage just the same."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 600  # a loaded CI machine is several times slower than an idle one
SHORTER = {"chat-base": {"stopping": {"maxSteps": 30}, "validation": {"interval": 15},
                         "checkpointing": {"interval": 15}, "logging": {"interval": 15}},
           "chat-lora": {"stopping": {"maxSteps": 6}, "validation": {"interval": 3}, "logging": {"interval": 3}},
           "chat-full": {"stopping": {"maxSteps": 6}, "validation": {"interval": 3}, "logging": {"interval": 3}}}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chat examples and their data, laid out as in the repository."""
    root = tmp_path_factory.mktemp("project")
    for name in ("chat-base", "chat-lora", "chat-full"):
        shutil.copytree(REPO / "examples" / name, root / "examples" / name,
                        ignore=shutil.ignore_patterns("runs", ".lmspec-cache", "__pycache__"))
        train = root / "examples" / name / "train.yaml"
        job = yaml.safe_load(train.read_text())
        for key, value in SHORTER[name].items():
            job["spec"][key] = {**job["spec"].get(key, {}), **value}
        train.write_text(yaml.safe_dump(job, sort_keys=False))
    (root / "examples" / "data" / "licenses").mkdir(parents=True)
    for f in (REPO / "examples" / "data" / "licenses").glob("*.txt"):
        shutil.copy(f, root / "examples" / "data" / "licenses" / f.name)
    shutil.copy(REPO / "examples" / "data" / "python-docs-qa.jsonl", root / "examples" / "data")
    return root


def _lmspec(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    return subprocess.run([sys.executable, "-m", "lmspec", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def base(project: Path) -> Path:
    result = _lmspec(project, "run", "examples/chat-base")
    assert result.returncode == 0, result.stderr[-3000:]
    export = project / "examples" / "chat-base" / "runs" / "chat-base-pretrain" / "export"
    assert (export / "config.json").is_file() and (export / "chat_template.jinja").is_file()
    return export


@pytest.mark.parametrize(("directory", "job"), [("chat-lora", "chat-lora-train"), ("chat-full", "chat-full-train")])
def test_a_fine_tune_starts_from_the_base_in_its_sibling_directory(project: Path, base: Path, directory: str,
                                                                    job: str) -> None:
    result = _lmspec(project, "run", "examples/chat-base", f"examples/{directory}", "--job", job)
    assert result.returncode == 0, result.stderr[-3000:]
    # The base is the pretraining run's export, found beside the pretraining job's manifest.
    assert f"at {base.resolve()}," in result.stdout + result.stderr
    assert (project / "examples" / directory / "runs" / job / "export" / "config.json").is_file()


def _lora_export(project: Path) -> Path:
    export = project / "examples" / "chat-lora" / "runs" / "chat-lora-train" / "export"
    if not export.is_dir():  # the fine-tune test ran first, unless this test runs alone
        result = _lmspec(project, "run", "examples/chat-base", "examples/chat-lora", "--job", "chat-lora-train")
        assert result.returncode == 0, result.stderr[-3000:]
    return export


def test_evaluate_reproduces_the_test_metrics_of_the_run(project: Path, base: Path, tmp_path: Path) -> None:
    """``lmspec evaluate`` tokenizes chat data as training did (the base's tokenizer, through
    the export) and feeds packed conversations their positions."""
    export = _lora_export(project)
    paths = ["examples/chat-base", "examples/chat-lora", "--job", "chat-lora-train"]
    result = _lmspec(project, "evaluate", *paths, "--split", "test", "--json", str(tmp_path / "test.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((export.parent / "summary.json").read_text())
    measured = json.loads((tmp_path / "test.json").read_text())["metrics"]
    assert measured == pytest.approx(summary["test"], rel=1e-5)
    # A new file of conversations goes through the same rendering and packing.
    records = (project / "examples" / "data" / "python-docs-qa.jsonl").read_text().splitlines()[:20]
    (tmp_path / "new.jsonl").write_text("\n".join(records) + "\n")
    result = _lmspec(project, "evaluate", *paths, "--input", str(tmp_path / "new.jsonl"),
                     "--json", str(tmp_path / "new.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    new = json.loads((tmp_path / "new.json").read_text())
    assert new["rows"] > 0 and set(new["metrics"]) == {"loss", "perplexity"}


def test_the_lora_model_is_served_with_the_chat_template_it_was_trained_with(project: Path, base: Path,
                                                                             tmp_path: Path) -> None:
    """... and ``lmspec predict`` over chat records answers as the server does at temperature 0."""
    from transformers import AutoTokenizer

    export = _lora_export(project)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "lmspec", "serve", "examples/chat-base", "examples/chat-lora", "--service",
         "chat-lora", "--port", str(port)], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert server.poll() is None, server.communicate()[0][-3000:]
            try:
                if httpx.get(url + "/v2/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.2)
        messages = [{"role": "user", "content": "What may I copy?"}]
        r = httpx.post(url + "/v1/chat/completions", timeout=60,
                       json={"model": "chat-lora", "messages": messages, "max_tokens": 4})
        assert r.status_code == 200, r.text
        # The prompt is the conversation rendered by the template the training data was rendered
        # with (the base's, exported with the tokenizer), the assistant's turn opened.
        tokenizer = AutoTokenizer.from_pretrained(export, local_files_only=True)
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
        assert (export / "chat_template.jinja").read_text() == (base / "chat_template.jinja").read_text()
        assert r.json()["usage"]["prompt_tokens"] == len(ids)

        # Records in the Dataset's chat format (messages), one with its reference answer: that
        # turn is left out of the prompt.
        records = [{"messages": messages},
                   {"messages": [*messages, {"role": "assistant", "content": "The reference answer."}]},
                   {"messages": [{"role": "user", "content": "Who may distribute it?"}]}]
        (tmp_path / "in.jsonl").write_text("".join(json.dumps(rec) + "\n" for rec in records))
        result = _lmspec(project, "predict", "examples/chat-base", "examples/chat-lora", "--service", "chat-lora",
                         "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"),
                         "--max-tokens", "8")
        assert result.returncode == 0, result.stderr[-3000:]
        predicted = [json.loads(line)["generated"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        served = []
        for rec in records[::2]:
            r = httpx.post(url + "/v1/chat/completions", timeout=60,
                           json={"model": "chat-lora", "messages": rec["messages"], "max_tokens": 8,
                                 "temperature": 0})
            assert r.status_code == 200, r.text
            served.append(r.json()["choices"][0]["message"]["content"])
        assert predicted == [served[0], served[0], served[1]]
        assert any(predicted), predicted
    finally:
        server.terminate()
        server.communicate(timeout=60)
