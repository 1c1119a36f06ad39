"""The harness against implementations run as processes: well-behaved, schema-only, and broken."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from lmspec.conformance import Builtin, Case, Subprocess, judge, load_suite, run_suite
from lmspec.conformance.harness import text

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "conformance" / "v1alpha1"
ADAPTER = ROOT / "conformance" / "examples" / "jsonschema-only" / "adapter.py"
PY = sys.executable


def _cmd(*args: object) -> str:
    return " ".join(f"'{a}'" for a in (PY, *args))


@pytest.mark.integration
def test_builtin_over_stdio_passes_everything(version_cases: list[Case]) -> None:
    outcomes, started = run_suite(version_cases, Subprocess(_cmd("-m", "lmspec.conformance.builtin")))
    assert started is not None and started.name == "lmspec"
    assert [o.case.id for o in outcomes if o.status != "pass"] == []


DURATIONS = {"gracePeriod", "headerTimeout", "bodyTimeout", "requestTimeout", "maxQueueDelay"}


def _duration_bounds_only(case: Case) -> bool:
    """A case whose only errors are bounds of v1beta1 durations, which a JSON Schema cannot state."""
    return bool(case.findings) and all(
        f.rule == "schema.bound" and (f.pointer or "").rsplit("/", 1)[-1] in DURATIONS for f in case.findings)


@pytest.mark.integration
def test_jsonschema_only_passes_schema_tier_and_fails_semantic(version_cases: list[Case]) -> None:
    outcomes, started = run_suite(version_cases, Subprocess(_cmd(ADAPTER, ROOT / "schemas")))
    assert started is not None and started.capabilities == frozenset()
    schema_failures = {o.case.id for o in outcomes if o.case.tier == "schema" and o.status != "pass"}
    assert schema_failures == {o.case.id for o in outcomes if o.case.tier == "schema" and _duration_bounds_only(o.case)}
    # Exactly the semantic cases expecting an error fail; near misses and warnings pass. The
    # rules the published schema expresses too (exactly one of two keys) are caught by it, so
    # their triggering cases pass: a schema-only tool reaches the same verdict.
    semantic = [o for o in outcomes if o.case.tier == "semantic"]
    in_schema = {"inferenceservice.model-source", "inferenceservice.key-source"}
    expected = {o.case.id for o in semantic if not o.case.valid and not set(o.case.rules) <= in_schema}
    assert {o.case.id for o in semantic if o.status == "fail"} == expected
    assert {o.case.id for o in semantic if set(o.case.rules) <= in_schema and not o.case.valid} <= \
        {o.case.id for o in semantic if o.status == "pass"}
    report = text(outcomes, started)
    assert "FAIL trainingjob/batch-world-size/triggers" in report
    assert "expected invalid, got valid" in report
    assert "(compared: verdicts only)" in report


BROKEN = r'''
import json, sys, time
for line in sys.stdin:
    msg = json.loads(line)
    if msg["cmd"] == "start":
        print(json.dumps({"ready": True, "version": 1, "implementation": {"name": "broken"},
                          "capabilities": ["findings"]}), flush=True)
        continue
    if msg["cmd"] != "run":
        break
    behaviour = msg["case"]["id"].split("/")[1]
    if behaviour == "crash":
        sys.stderr.write("boom\n"); sys.exit(3)
    if behaviour == "garbage":
        print("this is not json", flush=True)
    elif behaviour == "hang":
        time.sleep(60)
    elif behaviour == "wrong-seq":
        print(json.dumps({"seq": msg["seq"] + 7, "result": {"valid": True}}), flush=True)
    elif behaviour == "bad-finding":
        print(json.dumps({"seq": msg["seq"], "result": {"valid": False, "findings": [{"line": 1}]}}), flush=True)
    elif behaviour == "skip":
        print(json.dumps({"seq": msg["seq"], "skipped": True, "reason": "not supported"}), flush=True)
    else:
        print(json.dumps({"seq": msg["seq"], "result": {"valid": True, "findings": []}}), flush=True)
'''


def _case(behaviour: str) -> Case:
    return Case(f"demo/{behaviour}", "schema", behaviour, (), ({"file": "m.yaml", "source": "x: 1\n"},), True)


@pytest.mark.integration
def test_misbehaving_implementation_is_reported_not_hung(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text(BROKEN, encoding="utf-8")
    names = ["ok", "crash", "ok", "garbage", "ok", "hang", "wrong-seq", "bad-finding", "skip", "ok"]
    t0 = time.monotonic()
    outcomes, _ = run_suite([_case(n) for n in names], Subprocess(_cmd(script), timeout=1.0))
    assert time.monotonic() - t0 < 20
    assert [o.status for o in outcomes] == ["pass", "error", "pass", "error", "pass", "error",
                                            "error", "error", "skip", "pass"]
    problems = {o.case.id: " ".join(o.problems) for o in outcomes}
    assert "exited with status 3" in problems["demo/crash"] and "boom" in problems["demo/crash"]
    assert "not JSON" in problems["demo/garbage"]
    assert "no reply within 1 s" in problems["demo/hang"]
    assert "seq" in problems["demo/wrong-seq"]
    assert "malformed reply" in problems["demo/bad-finding"]


@pytest.mark.integration
def test_implementation_that_cannot_start(tmp_path: Path) -> None:
    script = tmp_path / "dead.py"
    script.write_text("import sys; sys.exit(1)\n", encoding="utf-8")
    outcomes, started = run_suite([_case("ok"), _case("ok2")], Subprocess(_cmd(script), start_timeout=5))
    assert started is None
    assert [o.status for o in outcomes] == ["error", "error"]
    assert "did not start" in outcomes[0].problems[0]
    outcomes, _ = run_suite([_case("ok")], Subprocess("/no/such/program"))
    assert outcomes[0].status == "error" and "cannot start" in outcomes[0].problems[0]


def test_judge_compares_only_what_is_declared() -> None:
    case = next(c for c in load_suite(SUITE, ["semantic"]) if c.id == "trainingjob/zero3-only/triggers")
    exp = case.findings[0]
    right = {"rule": exp.rule, "pointer": exp.pointer, "line": exp.line, "column": exp.column, "severity": "warning"}
    moved = {**right, "line": 1}
    ok = {"seq": 1, "result": {"valid": True, "findings": [right]}}
    assert judge(case, ok, frozenset({"findings", "positions"})).status == "pass"
    wrong_place = {"seq": 1, "result": {"valid": True, "findings": [moved]}}
    outcome = judge(case, wrong_place, frozenset({"findings", "positions"}))
    assert outcome.status == "fail" and "missing finding" in outcome.problems[0]
    assert judge(case, wrong_place, frozenset({"findings"})).status == "pass"
    # An extra warning of the case's own rule fails: the findings for exercised rules are exact.
    twice = {"seq": 1, "result": {"valid": True, "findings": [right, {**right, "pointer": "/spec"}]}}
    assert judge(case, twice, frozenset({"findings"})).status == "fail"
    # Other warnings are tolerated, other errors are not.
    other_warning = {"rule": "inferenceservice.public-bind", "pointer": "/x", "severity": "warning"}
    other_error = {"rule": "schema.type", "pointer": "/x", "severity": "error"}
    assert judge(case, {"seq": 1, "result": {"valid": True, "findings": [right, other_warning]}},
                 frozenset({"findings"})).status == "pass"
    assert judge(case, {"seq": 1, "result": {"valid": True, "findings": [right, other_error]}},
                 frozenset({"findings"})).status == "fail"
    # Verdict only: findings are not looked at.
    assert judge(case, {"seq": 1, "result": {"valid": True}}, frozenset()).status == "pass"
    assert judge(case, {"seq": 1, "result": {"valid": False}}, frozenset()).status == "fail"


def test_builtin_reports_errors_without_raising() -> None:
    reply = Builtin().run(1, {"id": "x", "documents": [{"file": "a.yaml"}]})
    assert reply["errored"] is True and "KeyError" in reply["reason"]
