#!/usr/bin/env python3
"""A deliberately tiny lmspec implementation: only the published JSON Schema, nothing else.

    lmspec conformance run --implementation "python conformance/examples/jsonschema-only/adapter.py"

It passes the schema tier and fails the semantic tier, because a JSON Schema cannot express the
semantic rules. It declares no capabilities, so the harness compares verdicts only; the findings
it reports (rule guessed from the failing keyword, pointer from the error path) are for reading.
"""

import base64
import json
import sys
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

BUNDLE = Path(__file__).resolve().parents[3] / "schemas" / "v1alpha1" / "lmspec.schema.json"
RULES = {"required": "schema.required", "additionalProperties": "schema.unknown-key",
         "type": "schema.type", "enum": "schema.enum", "const": "schema.enum",
         "pattern": "schema.pattern"}


def pointer(path):
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def validate(case, validator):
    findings = []
    for doc in case["documents"]:
        raw = base64.b64decode(doc["sourceBase64"]) if "sourceBase64" in doc else doc["source"].encode()
        try:
            data = [d for d in yaml.safe_load_all(raw) if d is not None]  # YAML 1.1, on purpose
        except yaml.YAMLError:
            data = []
        if not data:
            findings.append({"rule": "parse.syntax", "file": doc["file"], "severity": "error"})
        for index, manifest in enumerate(data):
            for error in validator.iter_errors(manifest):
                findings.append({"rule": RULES.get(str(error.validator), "schema.invalid"),
                                 "pointer": pointer(error.absolute_path), "file": doc["file"],
                                 "document": index, "severity": "error"})
    return {"valid": not findings, "findings": findings}


def main():
    schema_path = Path(sys.argv[1]) if len(sys.argv) > 1 else BUNDLE
    validator = Draft202012Validator(json.loads(schema_path.read_text()))
    for line in sys.stdin:
        message = json.loads(line)
        if message["cmd"] == "start":
            reply = {"ready": True, "version": 1, "capabilities": [],
                     "implementation": {"name": "jsonschema-only", "version": "1.0",
                                        "language": "python"}}
        elif message["cmd"] == "run":
            try:
                reply = {"seq": message["seq"], "result": validate(message["case"], validator)}
            except Exception as exc:  # e.g. a date PyYAML turned into a datetime
                reply = {"seq": message["seq"], "errored": True, "reason": repr(exc)}
        else:
            break
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
