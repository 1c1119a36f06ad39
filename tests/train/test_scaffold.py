"""The scaffold's own instructions work from inside its folder and from outside it: train, then
validate and serve the folder, with the run directory inside it never read back as manifests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def lmspec(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmspec", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "DS_ACCELERATOR": "cpu"})


def serves(*args: str, cwd: Path) -> str:
    """Start ``lmspec serve ARGS --port 0``, wait until ready, stop it; returns its output."""
    log = cwd / f"serve-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lmspec", "serve", *args, "--port", "0"], cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                found = re.search(r"listening on (http://\S+)", log.read_text())
                if found:
                    try:
                        with urllib.request.urlopen(found.group(1) + "/v2/health/ready", timeout=5) as r:
                            if r.status == 200:
                                return log.read_text()
                    except OSError:
                        pass
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
            raise AssertionError("not ready: " + log.read_text())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def test_scaffold_trains_validates_and_serves_from_inside_and_outside(tmp_path: Path) -> None:
    r = lmspec("init", "proj", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    proj = tmp_path / "proj"
    for name in ("train.yaml", "serve.yaml"):
        first = (proj / name).read_text().splitlines()[0]
        assert first.startswith("# lmspec ") and first.endswith(" ."), first
    (proj / "tokenizer.json").write_text('{"model": {"type": "BPE"}}')

    # Inside the folder, as the manifests' first lines say.
    r = lmspec("run", ".", cwd=proj)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (proj / "runs" / "demo-train" / "export" / "export.json").is_file()
    for cwd, target in ((proj, "."), (tmp_path, "proj")):
        r = lmspec("validate", target, cwd=cwd)
        assert r.returncode == 0 and r.stderr.count("skipped") == 1, r.stdout + r.stderr
        # The JSON file is named; the run directory lmspec wrote there goes unsaid.
        assert "tokenizer.json" in r.stderr and "runs/demo-train" not in r.stderr
    r = lmspec("validate", "--check-env", "runs/demo-train", cwd=proj)
    assert r.returncode == 0, r.stdout + r.stderr
    r = lmspec("validate", "--check-env", "--allow-outside", "../..", ".", cwd=proj / "runs" / "demo-train")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "from " + str(proj / "runs" / "demo-train" / "export") in serves(".", cwd=proj)
    assert "demo-serve" in serves("proj", cwd=tmp_path)

    # From outside, into another run directory, served from inside without a new manifest.
    r = lmspec("run", "proj", "--output", "other", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "from " + str(tmp_path / "other" / "export") in serves(".", "--export", "../other", cwd=proj)

    # The hint for a model not trained yet names a command that works from where serve was run.
    fresh = tmp_path / "fresh"
    assert lmspec("init", str(fresh), cwd=tmp_path).returncode == 0
    r = lmspec("serve", "fresh", "--port", "0", cwd=tmp_path)
    assert r.returncode == 2
    hint = re.search(r"run `(lmspec run [^`]*)` first", r.stderr)
    assert hint is not None, r.stderr
    # `lmspec export deepspeed-config` selects the job exactly as `lmspec run` does, without training.
    r = lmspec("export", "deepspeed-config", *hint.group(1).split()[2:], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
