"""Benchmark ``lmspec validate`` against ``check-jsonschema`` with the published bundle schema.

    python bench/validate.py                 # 2,000 v1beta1 files, 3 repeats
    python bench/validate.py --api-version v1alpha1
    python bench/validate.py --files 500 --repeats 5 --keep /tmp/corpus

Generates a corpus of single-document manifests of all four kinds in one API version (v1beta1,
the current one, unless ``--api-version`` says otherwise; about 10 % invalid, with a spread of
error types), then measures, as separate processes and by wall clock (median of the
repeats): one call over the whole corpus, and one call on a single file (cold start). Both
tools must reach the same verdict per file; files on which they disagree are listed, with the
lmspec rules that explain the difference (semantic and reference rules have no JSON Schema
counterpart). Warnings, such as the deprecation of v1alpha1 on every v1alpha1 document, leave
a file valid, as they leave ``lmspec validate``'s exit status at 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACTS = ["relu", "gelu", "tanh", "silu"]


class Version(NamedTuple):
    """What the templates write differently in each API version (spec/v1beta1/changes.md); the
    rest of every template, and every draw from the random generator, is the same in both."""

    name: str
    split_type: str                 # Dataset spec.splits: the key naming how to split
    precision: tuple[str, str]      # TrainingJob spec.precision: bf16 on, bf16 off
    served: str                     # InferenceService spec.model: the training job {job}
    queue_delay: str                # InferenceService spec.batching
    request_timeout: str            # InferenceService spec.limits
    api_key: str                    # InferenceService spec.auth.apiKeys item

    @property
    def header(self) -> str:
        return f"apiVersion: lmspec.io/{self.name}\n"

    @property
    def bundle(self) -> Path:
        return ROOT / "schemas" / self.name / "lmspec.schema.json"


VERSIONS = {
    "v1beta1": Version("v1beta1", "type", ("{mode: bf16}", "{mode: fp32}"),
                       "{{type: trainingJob, name: {job}}}", "maxQueueDelay: 2ms", "requestTimeout: 30s",
                       "{type: env, name: API_KEYS}"),
    "v1alpha1": Version("v1alpha1", "by", ("{bf16: {enabled: true}}", "{bf16: {enabled: false}}"),
                        "{{trainingJob: {job}}}", "maxQueueDelayMicroseconds: 2000",
                        "requestTimeoutSeconds: 30", "{env: API_KEYS}"),
}


def _checks() -> str:
    """Which checks ``lmspec validate`` runs here: the compiled ones, or the models themselves."""
    probe = ("import pydantic_core\nfrom lmspec.manifests import compiled, light\n"
             "print(light.usable(), compiled.PYDANTIC_CORE, pydantic_core.__version__)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    if out[0] == "True":
        return f"compiled (pydantic-core {out[2]})"
    return (f"the models (the compiled checks were made for pydantic-core {out[1]}, this is {out[2]}, "
            "or the models changed since: python -m lmspec.schemagen)")


# --- corpus ------------------------------------------------------------------------------------

def _model(v: Version, r: random.Random, name: str) -> str:
    n_in, n_cls = r.randint(2, 64), r.randint(2, 20)
    if r.random() < 0.5:
        hidden = [r.choice([16, 32, 64, 128, 256]) for _ in range(r.randint(1, 4))]
        arch = f"""  architecture:
    type: mlp
    hiddenSizes: {hidden}
    activation: {r.choice(ACTS)}
    dropout: {r.choice([0.0, 0.1, 0.2])}
"""
    else:
        layers = []
        for _ in range(r.randint(1, 5)):
            layers.append(f"      - {{type: linear, outFeatures: {r.choice([16, 32, 64])}}}")
            layers.append(f"      - {{type: {r.choice(ACTS)}}}")
            if r.random() < 0.3:
                layers.append("      - {type: dropout, p: 0.1}")
        layers.append(f"      - {{type: linear, outFeatures: {n_cls}}}")
        arch = "  architecture:\n    type: sequential\n    layers:\n" + "\n".join(layers) + "\n"
    return v.header + f"""kind: Model
metadata:
  name: {name}
  labels: {{team: t{r.randint(1, 9)}, tier: {r.choice(["dev", "prod"])}}}
  description: Classifier number {name} generated for the benchmark.
spec:
  task: classification
  numClasses: {n_cls}
{arch}  signature:
    inputs:
      - {{name: features, dtype: float32, shape: [-1, {n_in}]}}
    outputs:
      - {{name: logits, dtype: float32, shape: [-1, {n_cls}]}}
"""


def _dataset(v: Version, r: random.Random, name: str) -> str:
    feats = "\n".join(f"    - {{name: f{i}, dtype: float32}}" for i in range(r.randint(2, 24)))
    return v.header + f"""kind: Dataset
metadata:
  name: {name}
  description: Tabular data set {name}.
spec:
  sources:
    - path: data/{name}.csv
      format: csv
  features:
{feats}
  target: {{name: label, dtype: string}}
  preprocessing:
    - type: dropNulls
    - type: standardize
    - type: labelEncode
      column: label
  splits:
    {v.split_type}: ratio
    ratios: {{train: 0.8, validation: 0.1, test: 0.1}}
    seed: {r.randint(0, 999)}
    stratify: label
  license: CC-BY-4.0
"""


def _job(v: Version, r: random.Random, name: str, model: str, dataset: str) -> str:
    micro, accum, procs = r.choice([4, 8, 16, 32]), r.choice([1, 2, 4]), r.choice([1, 2, 4, 8])
    return v.header + f"""kind: TrainingJob
metadata:
  name: {name}
spec:
  model: {model}
  dataset: {dataset}
  loss: {{type: crossEntropy, labelSmoothing: 0.1}}
  optimizer: {{type: adamw, lr: 3e-4, weightDecay: 0.01, betas: [0.9, 0.95]}}
  schedule: {{type: cosine, warmupSteps: {r.randint(0, 500)}, minLr: 1e-5}}
  stopping: {{epochs: {r.randint(1, 50)}, maxSteps: {r.randint(100, 100000)}}}
  batch: {{microBatchSize: {micro}, gradientAccumulationSteps: {accum}, globalBatchSize: {micro * accum * procs}}}
  precision: {r.choice(v.precision)}
  gradientClipping: 1.0
  zero:
    stage: {r.choice([0, 1, 2])}
    reduceBucketSize: 5e8
  resources: {{nodes: 1, processesPerNode: {procs}, accelerator: cuda}}
  validation:
    interval: 50
    metrics: [loss, accuracy]
    earlyStopping: {{metric: accuracy, mode: max, patience: 5}}
  evaluation: {{metrics: [loss, accuracy]}}
  checkpointing: {{interval: 100, keepLast: 2}}
  seed: {r.randint(0, 10000)}
  output: {{dir: runs/{name}}}
"""


def _service(v: Version, r: random.Random, name: str, job: str) -> str:
    return v.header + f"""kind: InferenceService
metadata:
  name: {name}
spec:
  model: {v.served.format(job=job)}
  protocols: [oip-v2]
  server: {{host: 127.0.0.1, port: {r.randint(1024, 65535)}, workers: 1}}
  batching: {{enabled: true, maxBatchSize: 32, {v.queue_delay}, maxQueueSize: 256}}
  limits: {{maxBodyBytes: 1048576, {v.request_timeout}}}
  auth:
    apiKeys:
      - {v.api_key}
"""


def _sub(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def apply(text: str) -> str:
        return text.replace(old, new, count) if old in text else text + "bogusTopLevelKey: 1\n"
    return apply


def _out_of_range(text: str) -> str:
    for old, new in (("keepLast: 2", "keepLast: 0"), ("workers: 1", "workers: 0"),
                     ("train: 0.8", "train: 1.8"), ("shape: [-1,", "shape: [-2,")):
        if old in text:
            return text.replace(old, new, 1)
    return text


def _semantic(text: str) -> str:
    """A rule JSON Schema cannot express: batch arithmetic, ratios, widths, protocol vs task."""
    for old, new in (("globalBatchSize: ", "globalBatchSize: 1"), ("train: 0.8", "train: 0.85"),
                     ("  numClasses: ", "  numClasses: 99\n  x-was: "),
                     ("protocols: [oip-v2]", "protocols: [oip-v2, openai]")):
        if old in text:
            return text.replace(old, new, 1)
    return text


# Each damage: (name, whether JSON Schema can see it, transform).
DAMAGE: list[tuple[str, bool, Callable[[str], str]]] = [
    ("unknown-key", True, _sub("  name:", "  nmae:")),
    ("wrong-type", True, _sub("metadata:\n  name: ", "metadata:\n  name: 12345\n  x-was: ")),
    ("enum", True, _sub("kind: ", "kind: X")),
    ("missing-required", True, lambda t: t.replace("spec:\n", "sp3c:\n", 1)),
    ("pattern", True, _sub("  name: ", "  name: Upper_")),
    ("bound", True, lambda t: _out_of_range(t)),
    ("yaml-syntax", True, lambda t: t.replace("\n", "\n  : [\n", 1)),
    ("duplicate-key", True, lambda t: t + "kind: Model\n"),
    ("semantic", False, lambda t: _semantic(t)),
]


def generate(out: Path, n: int, seed: int = 1, api_version: str = "v1beta1") -> dict[str, str]:
    """Write ``n`` manifests in ``api_version``; returns file name → damage applied ('' for valid ones)."""
    v = VERSIONS[api_version]
    r = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    for g in range(0, n, 4):
        names = {k: f"{k}-{g // 4:05d}" for k in ("model", "data", "job", "svc")}
        texts = {
            "model": _model(v, r, names["model"]),
            "data": _dataset(v, r, names["data"]),
            "job": _job(v, r, names["job"], names["model"], names["data"]),
            "svc": _service(v, r, names["svc"], names["job"]),
        }
        for kind, text in list(texts.items())[: n - g]:
            damage = ""
            if r.random() < 0.10:
                damage, _, fn = r.choice(DAMAGE)
                text = fn(text)
            file = f"{names[kind]}.yaml"
            (out / file).write_text(text, encoding="utf-8")
            truth[file] = damage
    return truth


# --- running -----------------------------------------------------------------------------------

# Both tools run as installed software runs: with compiled bytecode (pip writes it for
# check-jsonschema at install time; an editable lmspec writes it on its first import). An
# environment that forbids writing it would charge one tool a recompilation on every start.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(cmd: list[str], repeats: int, cwd: Path) -> tuple[float, float]:
    """Median wall-clock and CPU (user + system) seconds of ``repeats`` runs of ``cmd``, after
    one run that is not counted (bytecode and file caches warm for both tools alike)."""
    subprocess.run(cmd, cwd=cwd, capture_output=True, env=ENV, check=False)
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def _lmspec_verdicts(corpus: Path) -> tuple[dict[str, bool], dict[str, set[str]], Counter[str]]:
    """Per file: valid or not, the rules of its errors; and how often each warning's rule fired.
    Only errors make a file invalid: a warning (``document.deprecated-version`` on every v1alpha1
    document) leaves it valid, as it leaves ``lmspec validate``'s exit status at 0."""
    proc = subprocess.run([str(BIN / "lmspec"), "validate", ".", "-o", "json"], cwd=corpus,
                          capture_output=True, text=True, check=False)
    doc = json.loads(proc.stdout)
    rules: dict[str, set[str]] = {}
    warnings: Counter[str] = Counter()
    for f in doc["findings"]:
        if f["severity"] == "error":
            rules.setdefault(Path(f["file"]).name, set()).add(f["rule"])
        else:
            warnings[f["rule"]] += 1
    files = [Path(f).name for f in doc["files"]]
    return {f: f not in rules for f in files}, rules, warnings


def _cjs_verdicts(corpus: Path, schema: Path, files: list[str]) -> dict[str, bool]:
    proc = subprocess.run([str(BIN / "check-jsonschema"), "--schemafile", str(schema), "-o", "json", *files],
                          cwd=corpus, capture_output=True, text=True, check=False)
    doc = json.loads(proc.stdout)
    bad = {Path(e["filename"]).name for e in doc.get("errors", [])}
    bad |= {Path(e["filename"]).name for e in doc.get("parse_errors", [])}
    return {f: f not in bad for f in files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold-repeats", type=int, default=7)
    ap.add_argument("--keep", type=Path, help="write the corpus here and keep it")
    ap.add_argument("--api-version", choices=sorted(VERSIONS), default="v1beta1",
                    help="the version the manifests are written in, and whose bundle schema check-jsonschema "
                         "uses (default: v1beta1, the current one)")
    args = ap.parse_args(argv)
    version = VERSIONS[args.api_version]

    tmp = Path(tempfile.mkdtemp(prefix="lmspec-bench-"))
    corpus = args.keep or tmp / "corpus"
    try:
        truth = generate(corpus, args.files, api_version=version.name)
        files = sorted(truth)
        schema = version.bundle
        damaged = Counter(d for d in truth.values() if d)
        print(f"apiVersion: lmspec.io/{version.name}")
        print(f"corpus: {len(files)} files in {corpus}, {sum(damaged.values())} damaged: "
              + ", ".join(f"{k} {v}" for k, v in sorted(damaged.items())))
        print(f"schema: {schema.relative_to(ROOT) if schema.is_relative_to(ROOT) else schema}")
        print(f"lmspec checks: {_checks()}")

        (lm_all, lm_all_cpu) = _time([str(BIN / "lmspec"), "validate", "."], args.repeats, corpus)
        (cj_all, cj_all_cpu) = _time([str(BIN / "check-jsonschema"), "--schemafile", str(schema), *files],
                          args.repeats, corpus)
        one = files[0]
        (lm_one, lm_one_cpu) = _time([str(BIN / "lmspec"), "validate", "--allow-missing-refs", one],
                          args.cold_repeats, corpus)
        (cj_one, cj_one_cpu) = _time([str(BIN / "check-jsonschema"), "--schemafile", str(schema), one],
                          args.cold_repeats, corpus)

        print(f"\n{'':<28}{'lmspec':>10}{'check-jsonschema':>19}{'ratio':>9}")
        print(f"{f'{len(files)} files, one call':<28}{lm_all:>9.2f}s{cj_all:>18.2f}s{cj_all / lm_all:>8.1f}×")
        print(f"{'1 file (cold start)':<28}{lm_one:>9.3f}s{cj_one:>18.3f}s{cj_one / lm_one:>8.1f}×")
        print(f"{'files per second':<28}{len(files) / lm_all:>10.0f}{len(files) / cj_all:>19.0f}")
        print(f"{f'{len(files)} files, CPU time':<28}{lm_all_cpu:>9.2f}s{cj_all_cpu:>18.2f}s"
              f"{cj_all_cpu / lm_all_cpu:>8.1f}×")
        print(f"{'1 file, CPU time':<28}{lm_one_cpu:>9.3f}s{cj_one_cpu:>18.3f}s{cj_one_cpu / lm_one_cpu:>8.1f}×")
        print(f"(median of {args.repeats} runs over the corpus, {args.cold_repeats} single-file runs; "
              f"{os.cpu_count()} CPUs)")

        lm_ok, lm_rules, lm_warnings = _lmspec_verdicts(corpus)
        cj_ok = _cjs_verdicts(corpus, schema, files)
        lmspec_only = {"semantic", "reference"}
        explained: list[str] = []
        unexplained: list[str] = []
        from lmspec.validator.registry import RULES

        for f in files:
            if lm_ok.get(f) == cj_ok.get(f):
                continue
            layers = {RULES[r].layer for r in lm_rules.get(f, set())}
            (explained if not lm_ok[f] and layers <= lmspec_only else unexplained).append(f)
        print(f"\nverdicts: lmspec {sum(not v for v in lm_ok.values())} invalid, "
              f"check-jsonschema {sum(not v for v in cj_ok.values())} invalid; "
              f"{len(explained)} differ only by lmspec's semantic/reference rules, "
              f"{len(unexplained)} unexplained")
        if lm_warnings:
            print("lmspec warnings (a file stays valid): "
                  + ", ".join(f"{k} {v}" for k, v in sorted(lm_warnings.items())))
        for f in unexplained:
            print(f"  DISAGREE {f} (damage: {truth[f] or 'none'}): lmspec "
                  f"{'valid' if lm_ok[f] else sorted(lm_rules.get(f, []))}, "
                  f"check-jsonschema {'valid' if cj_ok[f] else 'invalid'}")
        return 1 if unexplained else 0
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
