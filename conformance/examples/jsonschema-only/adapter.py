#!/usr/bin/env python3
"""A deliberately tiny lmspec implementation: only the published JSON Schemas, nothing else.

    lmspec conformance run --implementation "python conformance/examples/jsonschema-only/adapter.py"

Each document is checked against the bundle of its apiVersion, `schemas/<version>/lmspec.schema.json`
(the optional argument is another directory of such version directories).

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

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
RULES = {"required": "schema.required", "additionalProperties": "schema.unknown-key",
         "type": "schema.type", "enum": "schema.enum", "const": "schema.enum",
         "pattern": "schema.pattern"}


def pointer(path):
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def validator_for(manifest, validators, schemas):
    """The validator of the manifest's apiVersion (lmspec.io/<version>), or None for another."""
    api = manifest.get("apiVersion") if isinstance(manifest, dict) else None
    version = api.split("/", 1)[1] if isinstance(api, str) and api.startswith("lmspec.io/") else None
    bundle = schemas / version / "lmspec.schema.json" if version and "/" not in version else None
    if bundle is None or not bundle.is_file():
        return None
    if version not in validators:
        validators[version] = Draft202012Validator(json.loads(bundle.read_text()))
    return validators[version]


def validate(case, validators, schemas):
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
            validator = validator_for(manifest, validators, schemas)
            if validator is None:
                findings.append({"rule": "document.api-version", "pointer": "/apiVersion", "file": doc["file"],
                                 "document": index, "severity": "error"})
                continue
            for error in validator.iter_errors(manifest):
                findings.append({"rule": RULES.get(str(error.validator), "schema.invalid"),
                                 "pointer": pointer(error.absolute_path), "file": doc["file"],
                                 "document": index, "severity": "error"})
    return {"valid": not findings, "findings": findings}


def main():
    schemas = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMAS
    validators = {}
    for line in sys.stdin:
        message = json.loads(line)
        if message["cmd"] == "start":
            reply = {"ready": True, "version": 1, "capabilities": [],
                     "implementation": {"name": "jsonschema-only", "version": "1.0",
                                        "language": "python"}}
        elif message["cmd"] == "run":
            try:
                reply = {"seq": message["seq"], "result": validate(message["case"], validators, schemas)}
            except Exception as exc:  # e.g. a date PyYAML turned into a datetime
                reply = {"seq": message["seq"], "errored": True, "reason": repr(exc)}
        else:
            break
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
