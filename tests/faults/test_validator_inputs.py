"""Hostile inputs around the validator: FIFOs, symbolic-link loops, unreadable entries, closed or
full standard streams, odd file names and API arguments, huge document counts in every output
format, and ``--check-env`` paths that leave the project. Each gives a finding or a clear
message with exit status 0, 1 or 2: never a hang, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "examples" / "iris"


def lmspec(*args: str, cwd: Path | None = None, timeout: float = 60,
           **popen: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmspec", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, **popen)  # type: ignore[call-overload]


def no_traceback(out: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in out.stdout + out.stderr, out.stderr


def project(tmp_path: Path) -> Path:
    """A copy of the iris example beside its data, without what running it leaves in the checkout."""
    d = tmp_path / "p"
    shutil.copytree(IRIS, d, ignore=shutil.ignore_patterns("runs", ".lmspec-cache"))
    shutil.copytree(REPO / "examples" / "data", tmp_path / "data")
    return d


@pytest.mark.integration
def test_fifo_given_as_a_file_is_a_finding_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "m.yaml"
    os.mkfifo(fifo)
    out = lmspec("validate", str(fifo), timeout=30)
    assert out.returncode == 2 and "not a regular file" in out.stdout
    no_traceback(out)


@pytest.mark.integration
def test_fifo_as_github_step_summary_is_a_warning_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "summary"
    os.mkfifo(fifo)
    out = lmspec("validate", str(project(tmp_path)), "-o", "github", timeout=30,
                 env={**os.environ, "GITHUB_STEP_SUMMARY": str(fifo)})
    assert out.returncode == 0 and "cannot write $GITHUB_STEP_SUMMARY" in out.stderr
    no_traceback(out)


@pytest.mark.integration
def test_recursive_glob_through_symlink_loops_finishes(tmp_path: Path) -> None:
    d = tmp_path / "d" / "a"
    d.mkdir(parents=True)
    shutil.copy(IRIS / "model.yaml", d / "model.yaml")
    for i, target in enumerate(["..", "../..", ".", "../../d"]):
        (d / f"loop{i}").symlink_to(target)
    started = time.monotonic()
    out = lmspec("validate", str(tmp_path / "d" / "**" / "*.yaml"), timeout=60)
    assert time.monotonic() - started < 30
    assert out.returncode == 0 and "1 file(s)" in out.stdout, out.stdout
    no_traceback(out)


@pytest.mark.integration
def test_unreadable_entry_in_a_directory_is_a_finding_not_a_silent_pass(tmp_path: Path) -> None:
    d = project(tmp_path)
    (d / "sub").mkdir()
    (d / "sub" / "broken.yaml").symlink_to(tmp_path / "gone.yaml")  # unreadable even for root
    out = lmspec("validate", str(d))
    assert out.returncode == 2 and "broken.yaml" in out.stdout and "no such file" in out.stdout
    no_traceback(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads directories whatever their mode")
def test_unlistable_subdirectory_is_a_finding(tmp_path: Path) -> None:
    d = project(tmp_path)
    (d / "locked").mkdir()
    (d / "locked" / "bad.yaml").write_text("kind: [\n")
    (d / "locked").chmod(0)
    try:
        out = lmspec("validate", str(d))
    finally:
        (d / "locked").chmod(0o755)
    assert out.returncode == 2 and "cannot list the directory" in out.stdout
    no_traceback(out)


@pytest.mark.integration
def test_closed_stdout_is_exit_2_without_traceback(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c",
                          "import os, sys; os.close(1); sys.stdout = None; sys.argv = ['lmspec', 'validate', "
                          f"{str(project(tmp_path))!r}]; from lmspec.cli import main; main()"],
                         capture_output=False, stderr=subprocess.PIPE, text=True, timeout=60)
    assert out.returncode == 2 and "cannot write the report" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.integration
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_full_stdout_is_exit_2_without_traceback(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        out = subprocess.run([sys.executable, "-m", "lmspec", "validate", str(project(tmp_path))], stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=60)
    assert out.returncode == 2 and "No space left on device" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.integration
def test_closed_stdin_is_a_finding() -> None:
    out = subprocess.run([sys.executable, "-m", "lmspec", "validate", "-"], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60, close_fds=True,
                         preexec_fn=lambda: os.close(0))
    assert out.returncode == 2 and "standard input is closed" in out.stdout
    no_traceback(out)


@pytest.mark.integration
def test_non_utf8_file_name_with_sarif(tmp_path: Path) -> None:
    bad = os.fsencode(tmp_path) + b"/m\xff.yaml"
    with open(bad, "wb") as fh:
        fh.write(b"kind: [\n")
    out = subprocess.run([sys.executable, "-m", "lmspec", "validate", os.fsdecode(bad), "-o", "sarif"],
                         capture_output=True, timeout=60)
    assert out.returncode == 2 and b"m%FF.yaml" in out.stdout, out.stdout[-500:]
    assert b"Traceback" not in out.stderr


@pytest.mark.parametrize("paths", [["a\0b.yaml"], ["\udcff.yaml"], ["a\udc80\0.yaml"]])
def test_api_odd_path_strings_are_findings(paths: list[str]) -> None:
    import lmspec

    report = lmspec.validate(paths)
    assert report.exit_code() == 2 and report.findings[0].rule == "parse.io"


def test_api_accepts_path_objects(tmp_path: Path) -> None:
    import lmspec

    iris = project(tmp_path)
    assert lmspec.validate(iris).ok and lmspec.validate([iris / "model.yaml"]).ok
    assert lmspec.load(iris).get("Model", "iris-mlp") is not None


def test_api_with_nothing_to_check_says_so() -> None:
    import lmspec

    report = lmspec.validate([])
    assert not report.ok and "nothing was checked" in report.findings[0].message


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "sarif", "github"])
def test_every_format_is_linear_in_documents(tmp_path: Path, fmt: str) -> None:
    from lmspec.validator.core import read, validate_documents
    from lmspec.validator.report import render

    def seconds(n: int) -> float:
        path = tmp_path / f"{n}.yaml"
        path.write_text("---\n".join("kind: Nope\n" for _ in range(n)))
        docs, report = read([str(path)])
        validate_documents(docs, report)
        best = float("inf")
        for _ in range(3):  # the best of three: a busy machine only ever adds time
            started = time.perf_counter()
            render(report, fmt)
            best = min(best, time.perf_counter() - started)
        return best

    small, large = seconds(1000), seconds(8000)
    # Linear: 8× the documents cost about 8×; quadratic would be 64×.
    assert large < max(small, 0.01) * 24, (small, large)


@pytest.mark.integration
@pytest.mark.parametrize("where", ["SECRET", "../secret.txt", "/etc/passwd", "/**/*.x", "../*/*.txt"])
def test_check_env_does_not_read_outside_the_project(tmp_path: Path, where: str) -> None:
    d = project(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    where = where.replace("SECRET", str(secret))
    text = (d / "dataset.yaml").read_text()
    (d / "dataset.yaml").write_text(text.replace("    - path: ../data/iris.csv",
                                                 f"    - path: {where!r}\n      sha256: '{'0' * 64}'"))
    started = time.monotonic()
    out = lmspec("validate", "--check-env", str(d), cwd=d, timeout=60)
    assert time.monotonic() - started < 30
    assert out.returncode == 1 and "env.outside-project" in out.stdout, out.stdout
    assert "has sha256" not in out.stdout  # no digest, no fact about anything outside
    no_traceback(out)
    if where.endswith("secret.txt"):
        allowed = lmspec("validate", "--check-env", "--allow-outside", str(tmp_path), str(d), cwd=d)
        assert "env.outside-project" not in allowed.stdout and "has sha256" in allowed.stdout


@pytest.mark.integration
def test_host_flag_with_a_public_address_warns(tmp_path: Path) -> None:
    from serve_fixtures import service_manifest

    export = tmp_path / "nothing"
    manifest = service_manifest(tmp_path / "svc", "iris", export)
    out = lmspec("serve", str(manifest), "--host", "0.0.0.0", "--port", "0", timeout=60)
    # No export there, so it stops before listening, but only after the warning.
    assert out.returncode == 2
    assert "listening on 0.0.0.0 with no API keys" in out.stderr
