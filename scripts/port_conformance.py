#!/usr/bin/env python3
"""Port the conformance suite of v1alpha1 to v1beta1, for maintainers.

    .venv/bin/python scripts/port_conformance.py             # writes conformance/v1beta1/<tier>/*.yaml
    .venv/bin/python scripts/port_conformance.py --dry-run   # only says what it would port and drop

Each case of ``conformance/v1alpha1/<tier>/<file>`` becomes a case of the same id in
``conformance/v1beta1/<tier>/<file>``:

- its documents are converted with lmspec's conversion functions (``lmspec.conversion``). A
  document that no change touches but its ``apiVersion`` is edited in that one place, byte for
  byte, so the YAML-tier inputs (odd scalars, anchors, encodings, syntax errors) stay what they
  test; any other document is written back over its own text, comments and key order kept, as
  ``lmspec convert`` does;
- each expected finding's pointer is mapped to v1beta1 (``lmspec.conversion.spoke_path``), and
  its line and column are found again in the converted text at the same kind of place: the
  value, the key, or the mapping a key is missing from;
- a case is dropped when v1beta1 cannot state its subject: its conversion loses a value (two
  model sources at once, an inline API key), it expects a finding of a rule v1beta1's schema makes
  impossible (:data:`IMPOSSIBLE`), or it is listed in :data:`NOT_PORTED`. Near-miss cases of
  those rules are kept without them in ``rules``. The dropped cases are listed on standard output.

The output is then data like any case: reviewed, committed, and run by ``pytest
tests/conformance``. The cases for what is new in v1beta1 are hand-written in files of their own
(``conformance/v1beta1/<tier>/v1beta1-*.yaml``), which this script never writes; it overwrites
only files that start with its own header.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runner"))

from lmspec.conformance.suite import TIERS, read_case_file  # noqa: E402  (after the path is set)
from lmspec.conversion import convert, spoke_path  # noqa: E402
from lmspec.convert.roundtrip import loader, merge, position, to_plain  # noqa: E402
from lmspec.manifests.document import Document  # noqa: E402
from lmspec.validator.parse import ParseError, decode, parse_text  # noqa: E402

SOURCE, TARGET = "v1alpha1", "v1beta1"
OLD, NEW = f"lmspec.io/{SOURCE}", f"lmspec.io/{TARGET}"
HEADER = f"# Ported from conformance/{SOURCE}/{{path}} by scripts/port_conformance.py; reviewed, then committed.\n"

IMPOSSIBLE = {
    "model.pretrained-source": "architecture.source is one object (spec/v1beta1/changes.md, change 2)",
    "inferenceservice.model-source": "spec.model is one source (change 3)",
    "inferenceservice.key-source": "an API key source is {type: env} or {type: file} (change 4)",
    "inferenceservice.inline-secret": "the schema accepts no string API key (change 4)",
    "trainingjob.precision-exclusive": "precision.mode names one mode (change 5)",
}
"""Rules no v1beta1 manifest can break, and why."""

NOT_PORTED: dict[str, str] = {}
"""Case ids left out for a reason conversion cannot see, and the reason."""


class Dropped(Exception):
    """A case whose subject v1beta1 cannot state."""


# --- Documents -----------------------------------------------------------------------------------

def strip_round_trip(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """Remove the annotations the conversion added for the way back (a ported case tests
    v1beta1, not the round trip); returns the paths they kept."""
    annotations = new.get("metadata", {}).get("annotations")
    if not isinstance(annotations, dict):
        return []
    before = old.get("metadata", {}).get("annotations") or {}
    kept = [k for k in annotations if k.startswith(f"lmspec.io/{SOURCE}-") and k not in before]
    for key in kept:
        del annotations[key]
    if not annotations and "annotations" not in old.get("metadata", {}):
        del new["metadata"]["annotations"]
    return [k.split("-", 1)[1] for k in kept]


def port_text(text: str, file: str, valid: bool, tier: str) -> str:
    """One file's text in v1beta1: its v1alpha1 documents converted (see the module doc)."""
    try:
        yaml_rt = loader(text)
        nodes = list(yaml_rt.load_all(text))
    except Exception:  # not YAML ruamel reads (syntax errors, duplicate keys): only apiVersion changes
        return text.replace(OLD, NEW)
    edits: list[tuple[int, int, str, str]] | None = []
    out_nodes = []
    for node in nodes:
        plain = to_plain(node)
        if not isinstance(plain, dict) or plain.get("apiVersion") != OLD:
            out_nodes.append(node)
            continue
        new, losses = convert(copy.deepcopy(plain), NEW)
        if losses:
            raise Dropped(f"{file}: converting loses " + "; ".join(f"{x.dotted}: {x.message}" for x in losses))
        # Stripped from every document; an invalid case's subject may have gone into one.
        if (kept := strip_round_trip(new, plain)) and not valid:
            raise Dropped(f"{file}: v1beta1 holds {', '.join(kept)} only in a round-trip annotation")
        if edits is not None:
            edits = scalar_edits(node, plain, new, (), edits)
        out_nodes.append(merge(node, new))
    if edits is not None:
        return apply_edits(text, edits)
    if tier == "yaml":
        raise Dropped(f"{file}: the conversion reshapes a document whose YAML text is the subject; port it by hand")
    buf = io.StringIO()
    out_nodes = [n for n in out_nodes if n is not None]
    if len(out_nodes) == 1:
        yaml_rt.dump(out_nodes[0], buf)
    else:
        yaml_rt.dump_all(out_nodes, buf)
    return buf.getvalue()


def scalar_edits(node: Any, old: Any, new: Any, path: tuple[str | int, ...],
                 edits: list[tuple[int, int, str, str]]) -> list[tuple[int, int, str, str]] | None:
    """The text edits that turn ``old`` into ``new`` when they differ only in plain string
    scalars written as they read (``task: causal-lm``): ``(line, column, old, new)``, 1-based;
    ``None`` when the shape changes too."""
    if isinstance(old, dict) and isinstance(new, dict):
        if list(old) != list(new):
            return None
        for key in old:
            if scalar_edits(node, old[key], new[key], (*path, key), edits) is None:
                return None
        return edits
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return None
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            if scalar_edits(node, a, b, (*path, i), edits) is None:
                return None
        return edits
    if type(old) is type(new) and (old == new or not isinstance(old, str | int | float | bool)):
        return edits  # equal, or a node conversion leaves alone (a tagged scalar)
    if isinstance(old, str) and isinstance(new, str) and new.replace("-", "").replace(".", "").replace(
            "/", "").isalnum():
        line, column = position(node, path)
        edits.append((line, column, old, new))
        return edits
    return None


def apply_edits(text: str, edits: list[tuple[int, int, str, str]]) -> str:
    """``text`` with each scalar replaced where it is written, right to left on each line."""
    lines = text.split("\n")
    for line, column, old, new in sorted(edits, reverse=True):
        row = lines[line - 1]
        start = column - 1
        if row[start:start + 1] in ("'", '"') and row[start + 1:start + 1 + len(old) + 1] == old + row[start]:
            start += 1  # a quoted scalar: its text is between the quotes
        if row[start:start + len(old)] != old:
            raise Dropped(f"line {line}: {old!r} is not written as it reads at column {column}")
        lines[line - 1] = row[:start] + new + row[start + len(old):]
    return "\n".join(lines)


def port_bytes(raw: bytes) -> bytes:
    """Raw inputs (encodings) change only their apiVersion, in the encoding they are written in."""
    for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
        raw = raw.replace(OLD.encode(encoding), NEW.encode(encoding))
    return raw


def parsed(documents: list[dict[str, str]]) -> dict[str, list[Document] | None]:
    """Each file's documents as lmspec reads them (None when they do not parse)."""
    out: dict[str, list[Document] | None] = {}
    for d in documents:
        raw = base64.b64decode(d["sourceBase64"]) if "sourceBase64" in d else d["source"].encode("utf-8")
        try:
            out[d["file"]] = parse_text(decode(raw, d["file"]), d["file"])
        except ParseError:
            out[d["file"]] = None
    return out


# --- Findings ------------------------------------------------------------------------------------

def split_pointer(pointer: str, data: Any) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for token in pointer.split("/")[1:] if pointer else []:
        key = token.replace("~1", "/").replace("~0", "~")
        step: str | int = int(key) if isinstance(data, list) and key.isdigit() else key
        parts.append(step)
        data = _child(data, step)
    return tuple(parts)


def _child(data: Any, step: str | int) -> Any:
    if isinstance(data, dict):
        return data.get(step)
    if isinstance(data, list) and isinstance(step, int) and 0 <= step < len(data):
        return data[step]
    return None


def _has(data: Any, step: str | int) -> bool:
    return (isinstance(data, dict) and step in data) or (
        isinstance(data, list) and isinstance(step, int) and 0 <= step < len(data))


def join_pointer(path: tuple[str | int, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def port_finding(finding: dict[str, Any], old: dict[str, list[Document] | None],
                 new: dict[str, list[Document] | None], single: str | None) -> dict[str, Any]:
    """The finding in v1beta1 terms: its pointer mapped, its position found again."""
    out = dict(finding)
    if "pointer" not in finding:  # about the input as a whole: parse errors keep their place
        return out
    file = finding.get("file", single)
    index = finding.get("document", 0)
    olds, news = old.get(file or ""), new.get(file or "")
    if not olds or not news or index >= len(olds) or index >= len(news):
        raise Dropped(f"finding {finding} is in a document that does not parse")
    before, after = olds[index], news[index]
    path = split_pointer(finding["pointer"], before.data)
    kind = before.data.get("kind") if isinstance(before.data, dict) else None
    # Where the path is missing (a required key), it is mapped as it is, not to what exists.
    data = after.data if _exists(before.data, path) else None
    moved = spoke_path(NEW, kind, path, data) if isinstance(kind, str) and \
        before.data.get("apiVersion") == OLD else path
    out["pointer"] = join_pointer(moved)
    if "line" in finding:
        where = (finding["line"], finding.get("column"))
        if path and _exists(before.data, path) and before.locate(path, key=True) == where:
            line, column = after.locate(moved, key=True)
        elif before.locate(path)[0] == where[0] and where[1] in (None, before.locate(path)[1]):
            line, column = after.locate(moved)
        else:
            raise Dropped(f"finding {finding}: its position is neither the node at its pointer nor its key")
        out["line"] = line
        if "column" in finding:
            out["column"] = column
    return out


def _exists(data: Any, path: tuple[str | int, ...]) -> bool:
    for step in path:
        if not _has(data, step):
            return False
        data = _child(data, step)
    return True


# --- Cases ---------------------------------------------------------------------------------------

def port_case(case: dict[str, Any], tier: str) -> dict[str, Any]:
    if case["id"] in NOT_PORTED:
        raise Dropped(NOT_PORTED[case["id"]])
    expected = {f["rule"] for f in case.get("findings") or ()}
    if impossible := sorted(expected & set(IMPOSSIBLE)):
        raise Dropped(f"expects {', '.join(impossible)}: {IMPOSSIBLE[impossible[0]]}")
    out = dict(case)
    out["rules"] = [r for r in case["rules"] if r not in IMPOSSIBLE]
    if "documents" in case:
        documents = [dict(d) for d in case["documents"]]
    else:
        key = "sourceBase64" if "sourceBase64" in case else "source"
        documents = [{"file": case.get("file", "manifest.yaml"), key: case[key]}]
    ported = []
    for d in documents:
        if "sourceBase64" in d:
            raw = port_bytes(base64.b64decode(d["sourceBase64"]))
            ported.append({**d, "sourceBase64": base64.b64encode(raw).decode("ascii")})
        else:
            ported.append({**d, "source": port_text(d["source"], d["file"], case["valid"], tier)})
    old, new = parsed(documents), parsed(ported)
    single = documents[0]["file"] if len(documents) == 1 else None
    if "findings" in case:
        out["findings"] = [port_finding(f, old, new, single) for f in case["findings"]]
    if "documents" in case:
        out["documents"] = ported
    else:
        key = "sourceBase64" if "sourceBase64" in case else "source"
        out[key] = ported[0][key]
    return out


def port_file(path: Path, tier: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    data = read_case_file(path)
    cases, dropped = [], []
    for case in data["cases"]:
        try:
            cases.append(port_case(case, tier))
        except Dropped as why:
            dropped.append((case["id"], str(why)))
    out = {k: v for k, v in data.items() if k != "cases"}
    out["cases"] = cases
    return out, dropped


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, mappings of scalars in flow style."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data: dict[str, Any], header: str) -> str:
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110,
                              default_flow_style=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="write nothing; list what would be ported")
    args = parser.parse_args(argv)
    source, target = ROOT / "conformance" / SOURCE, ROOT / "conformance" / TARGET
    total, all_dropped = 0, []
    for tier in TIERS:
        for path in sorted((source / tier).glob("*.yaml")):
            relative = path.relative_to(source)
            data, dropped = port_file(path, tier)
            total += len(data["cases"])
            all_dropped += [(str(relative), *d) for d in dropped]
            dest = target / relative
            header = HEADER.format(path=relative)
            if dest.exists() and not dest.read_text(encoding="utf-8").startswith(header):
                print(f"{dest}: not written by this script; left alone", file=sys.stderr)
                return 2
            if data["cases"] and not args.dry_run:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(dump(data, header), encoding="utf-8")
    print(f"ported {total} cases to conformance/{TARGET}; dropped {len(all_dropped)}:")
    for file, case_id, why in all_dropped:
        print(f"  {file}  {case_id}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
