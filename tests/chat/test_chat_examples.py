"""The chat examples run as the README runs them, from the directory above ``examples/``: the
base is pretrained, fine-tuned with LoRA (ZeRO-2) and fully (ZeRO-3 with CPU offload) from its
export in a sibling directory, and the LoRA model is served with the base's chat template.

The base and the LoRA job are cut to a few steps, which exercises every stage just the same; the
full fine-tune runs as declared (a minute or two on a loaded 2-core machine), and answers the
questions of its table as the README shows."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 600  # a loaded CI machine is several times slower than an idle one
SHORTER = {"chat-base": {"stopping": {"maxSteps": 30}, "validation": {"interval": 15},
                         "checkpointing": {"interval": 15}, "logging": {"interval": 15}},
           "chat-lora": {"stopping": {"maxSteps": 6}, "validation": {"interval": 3}, "logging": {"interval": 3}},
           "chat-full": {}}


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
    shutil.copy(REPO / "examples" / "data" / "capitals-qa.jsonl", root / "examples" / "data")
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
    # What the run did: the validation loss at each validation in the log, and the final losses
    # and the passes made over the data (30 steps of about 41 an epoch: a fraction) in summary.json.
    assert "validation at step 15: loss" in result.stdout and "validation at step 30: loss" in result.stdout
    summary = json.loads((export.parent / "summary.json").read_text())
    assert summary["steps"] == 30 and 0.5 < summary["epochs"] < 1
    assert summary["trainLoss"] > 0 and summary["validation"]["loss"] > 0 and summary["test"]["loss"] > 0
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
    records = (project / "examples" / "data" / "capitals-qa.jsonl").read_text().splitlines()[:20]
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
        messages = [{"role": "user", "content": "What is the capital of France?"}]
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
                   {"messages": [{"role": "user", "content": "Which city is the capital of Peru?"}]}]
        (tmp_path / "in.jsonl").write_text("".join(json.dumps(rec) + "\n" for rec in records))
        result = _lmspec(project, "predict", "examples/chat-base", "examples/chat-lora", "--service", "chat-lora",
                         "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"),
                         "--max-tokens", "8")
        assert result.returncode == 0, result.stderr[-3000:]
        rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        # Each answer comes with the turn it answers and the record's reference answer.
        assert [(r["prompt"], r["reference"]) for r in rows] == [
            ("What is the capital of France?", None), ("What is the capital of France?", "The reference answer."),
            ("Which city is the capital of Peru?", None)]
        predicted = [r["generated"] for r in rows]
        # The same as parquet, a record at a time: a chunk whose reference is absent (null) and one
        # with a reference make one table.
        result = _lmspec(project, "predict", "examples/chat-base", "examples/chat-lora", "--service", "chat-lora",
                         "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.parquet"),
                         "--max-tokens", "8", "--chunk-rows", "1")
        assert result.returncode == 0, result.stderr[-3000:]
        import pyarrow.parquet as pq

        assert pq.read_table(tmp_path / "out.parquet").to_pylist() == rows
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


def test_the_full_fine_tune_answers_the_questions_of_its_table(project: Path, base: Path, tmp_path: Path) -> None:
    """The chat-full example as declared learns its table: at temperature 0 it answers an
    in-domain question in the data's template, with the right capital, and its report shows
    held-out questions with the model's answers beside the references."""
    export = project / "examples" / "chat-full" / "runs" / "chat-full-train" / "export"
    paths = ["examples/chat-base", "examples/chat-full"]
    if not export.is_dir():  # the fine-tune test ran first, unless this test runs alone
        result = _lmspec(project, "run", *paths, "--job", "chat-full-train")
        assert result.returncode == 0, result.stderr[-3000:]
    questions = ["What is the capital of France?", "Which city is the capital of Japan?"]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}]}) + "\n"
                                               for q in questions))
    result = _lmspec(project, "predict", *paths, "--service", "chat-full", "--input", str(tmp_path / "in.jsonl"),
                     "--output", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr[-3000:]
    answers = [json.loads(line)["generated"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert answers == ["The capital of France is Paris.", "The capital of Japan is Tokyo."]

    result = _lmspec(project, "report", str(export.parent), "-o", str(tmp_path / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Sample answers</h2>" in page and "<h2>Sample generations</h2>" not in page
    table = page.split("<h2>Sample answers</h2>")[1].split("</table>")[0]
    assert "<tr><th>prompt</th><th>answer</th><th>reference</th></tr>" in table
    rows = [re.findall(r'<td class="text">(.*?)</td>', row) for row in table.split("<tr>")[2:]]
    assert len(rows) == 3 and all(len(cells) == 3 for cells in rows), rows
    assert all("capital" in question and reference.startswith("The capital of ") for question, _, reference in rows)
    assert any(answer == reference for _, answer, reference in rows), rows  # held out, yet answered


@pytest.fixture(scope="module")
def dpo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chat-dpo example and the base it starts from, both as declared (the answers it gives
    depend on how well the base was pretrained)."""
    root = tmp_path_factory.mktemp("dpo-project")
    for name in ("chat-base", "chat-dpo"):
        shutil.copytree(REPO / "examples" / name, root / "examples" / name,
                        ignore=shutil.ignore_patterns("runs", ".lmspec-cache", "__pycache__"))
    shutil.copytree(REPO / "examples" / "data" / "licenses", root / "examples" / "data" / "licenses")
    for data in ("capitals-qa-mixed.jsonl", "capitals-preference.jsonl"):
        shutil.copy(REPO / "examples" / "data" / data, root / "examples" / "data")
    for args in (["examples/chat-base"], ["examples/chat-base", "examples/chat-dpo", "--job", "chat-dpo-sft"]):
        result = _lmspec(root, "run", *args)
        assert result.returncode == 0, result.stderr[-3000:]
    return root


def _answers(project: Path, tmp_path: Path, name: str, records: list[dict[str, Any]], *target: str) -> list[str]:
    (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = _lmspec(project, "predict", "examples/chat-base", "examples/chat-dpo", *target,
                     "--input", str(tmp_path / f"{name}.jsonl"), "--output", str(tmp_path / f"{name}-out.jsonl"))
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line)["generated"] for line in (tmp_path / f"{name}-out.jsonl").read_text().splitlines()]


def test_dpo_makes_the_fine_tune_answer_in_the_preferred_phrasing(dpo_project: Path, tmp_path: Path) -> None:
    """The chat-dpo example as declared: a supervised fine-tune that answers in two phrasings,
    then DPO on pairs that prefer one of them. At temperature 0 the DPO model answers nearly
    every question of the table in the preferred phrasing, which the fine-tune did for about
    half of them; the validation pairs' reward accuracy says the same."""
    sys.path.insert(0, str(REPO / "scripts"))
    from make_capitals_qa import CAPITALS

    project = dpo_project
    result = _lmspec(project, "run", "examples/chat-base", "examples/chat-dpo", "--job", "chat-dpo-train")
    assert result.returncode == 0, result.stderr[-3000:]
    run = project / "examples" / "chat-dpo" / "runs" / "chat-dpo-train"
    assert "reference log-probabilities of" in result.stdout
    validation = json.loads((run / "summary.json").read_text())["validation"]
    assert validation["rewardAccuracy"] >= 0.9 and validation["rewardMargin"] > 0, validation

    questions = [f"What is the capital of {country}?" for country in CAPITALS]
    before = _answers(project, tmp_path, "sft", [{"messages": [{"role": "user", "content": q}]} for q in questions],
                      "--job", "chat-dpo-sft")
    after = _answers(project, tmp_path, "dpo", [{"prompt": q} for q in questions], "--service", "chat-dpo")
    preferred = [f"{country}'s capital is {city}." for country, city in CAPITALS.items()]
    plain = [f"The capital of {country} is {city}." for country, city in CAPITALS.items()]
    # The fine-tune knows its table in both phrasings ...
    assert sum(a in (p, q) for a, p, q in zip(before, preferred, plain, strict=True)) >= 28, before
    assert sum(a == p for a, p in zip(before, preferred, strict=True)) <= 24, before
    # ... and after DPO prefers one, still naming the right capital for most countries.
    assert sum("'s capital is " in a for a in after) >= 26, after
    assert sum(a == p for a, p in zip(after, preferred, strict=True)) >= 20, after
