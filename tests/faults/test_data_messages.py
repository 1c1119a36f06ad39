"""What messages about data files show of the data: ``lmspec validate --check-env`` findings (and
the same readers' errors in training and ``lmspec predict``) name the file, row and column and
the rule broken, and quote data — values, a csv's header, a record's keys — only as short,
escaped excerpts, never when it looks like a credential. Numbers and bools holding a control
character are refused, though Python and numpy read some of those characters as spaces."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from runs import IRIS_DATASET, merge

import lmspec
from lmspec.data.errors import DataError

SECRET = "aws_secret_access_key=wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY"
HEADER = "sepal_length,sepal_width,petal_length,petal_width,species"
ROW = "5.1,3.5,1.4,0.2,setosa"


def _findings(tmp_path: Path, name: str, content: str) -> list[str]:
    """``--check-env`` findings (as one line each) for a Dataset of the iris columns over one file."""
    (tmp_path / name).write_text(content, encoding="utf-8", newline="")
    dataset = merge(IRIS_DATASET, {"spec": {"sources": [{"path": name}]}})
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(dataset, sort_keys=False))
    report = lmspec.validate([str(tmp_path / "dataset.yaml")], check_env=True)
    return [f"{f.file}:{f.line}: {f.message} ({f.hint})" for f in report.errors]


def _row(**values: str) -> str:
    fields = dict(zip(HEADER.split(","), ROW.split(","), strict=True)) | values
    return ",".join(fields.values())


CASES: dict[str, tuple[str, str, list[str], str]] = {
    # name: (file, content, words the one finding holds, text it must not hold)
    "secret value": ("d.csv", f"{HEADER}\n{ROW}\n{_row(petal_width=SECRET)}\n",
                     ["d.csv:3:", "'petal_width'", "not a number", "looks like a credential"], "wJalr"),
    "secret label": ("d.csv", f"{HEADER}\n{_row(species=SECRET)}\n",
                     ["d.csv:2:", "'species'", "looks like a credential"], "wJalr"),
    "secret header": ("d.csv", f"{SECRET},sepal_width,petal_length,petal_width,species\n{ROW}\n",
                      ["'sepal_length' is not in the data", "sepal_width", "looks like a credential"], "wJalr"),
    "secret key": ("d.jsonl", json.dumps({SECRET: 1, "sepal_width": 3.5}) + "\n",
                   ["'sepal_length' is not in the data", "sepal_width", "looks like a credential"], "wJalr"),
    "long value": ("d.csv", f"{HEADER}\n{_row(sepal_length='1' + 'x' * 500)}\n",
                   ["d.csv:2:", "'sepal_length'", "'1" + "x" * 18 + "…'"], "x" * 19),
    "terminal escape in a header": ("d.csv", "\x1b[2Jsepal\n1\n", ["'\\x1b[2Jsepal'"], "\x1b"),
    "many columns": ("d.csv", ",".join(f"c{i}" for i in range(500)) + "\n",
                     ["c0, c1", "(500 in all)"], "c499"),
    "unit separator": ("d.csv", f"{HEADER}\n{_row(sepal_width='3.5' + chr(0x1F))}\n",
                       ["d.csv:2:", "'sepal_width'", "'3.5\\x1f' is not a number", "U+001F"], "\x1f"),
    "NUL": ("d.csv", f"{HEADER}\n{_row(sepal_width='3.5' + chr(0))}\n",
            ["d.csv:2:", "'sepal_width'", "'3.5\\x00' is not a number", "U+0000"], "\x00"),
    "line break in a quoted number": ("d.csv", f'{HEADER}\n{_row(sepal_width=chr(34) + "3.5" + chr(10) + chr(34))}\n',
                                      ["d.csv:2:", "'sepal_width'", "U+000A"], "\n"),
    "form feed in jsonl": ("d.jsonl", json.dumps({"sepal_length": 5.1, "sepal_width": "\f3.5", "petal_length": 1.4,
                                                  "petal_width": 0.2, "species": "setosa"}) + "\n",
                           ["d.jsonl:1:", "'sepal_width'", "U+000C"], "\f"),
    "next line in jsonl": ("d.jsonl", json.dumps({"sepal_length": "5.1\x85", "sepal_width": 3.5, "petal_length": 1.4,
                                                  "petal_width": 0.2, "species": "setosa"}) + "\n",
                           ["d.jsonl:1:", "'sepal_length'", "U+0085"], "\x85"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_check_env_findings_show_data_only_as_safe_excerpts(tmp_path: Path, case: str) -> None:
    name, content, words, hidden = CASES[case]
    findings = _findings(tmp_path, name, content)
    assert len(findings) == 1, findings
    assert all(w in findings[0] for w in words), findings[0]
    assert hidden not in findings[0], findings[0]


def test_control_characters_are_refused_in_bool_columns(tmp_path: Path) -> None:
    from lmspec.data._read import ColumnSpec
    from lmspec.data.stream import file_info, read_chunks

    column = [ColumnSpec("flag", "bool", "spec.features[0]")]
    for value, code in [("true\x1f", "U+001F"), ("\x1c", "U+001C"), ("1\x00", "U+0000")]:
        path = tmp_path / "flags.csv"
        path.write_text(f"flag\ntrue\n{value}\n", newline="")
        with pytest.raises(DataError, match="row 3, column 'flag'.*is not a bool: it holds the control "
                                            f"character {re.escape(code)}"):
            list(read_chunks(file_info(path), column, 10))
    path.write_text("flag\ntrue\n false \t\n\n")
    assert [t.columns["flag"].tolist() for t in read_chunks(file_info(path), column, 10)] == [[1.0, 0.0]]


@pytest.mark.parametrize(("record", "shown", "hidden"), [
    ({SECRET: "x", "msgs": []}, "its fields: (a name that looks like a credential), msgs", "wJalr"),
    ({f"k{i}": i for i in range(100)}, "… (100 in all)", "k99"),
    ({"\x1b[2J" + "ab " * 30: 1}, "'\\x1b[2Jab ab ab", "ab " * 14),
])
def test_chat_record_fields_are_shown_as_safe_excerpts(record: dict[str, Any], shown: str, hidden: str) -> None:
    from lmspec.data.conversations import to_messages
    from lmspec.v1alpha1.dataset import Chat

    chat = Chat.model_validate({"sequenceLength": 64}, by_alias=True)
    with pytest.raises(DataError) as caught:
        to_messages(record, chat, {"file": "x.jsonl", "row": 3, "unit": "line"})
    message = str(caught.value)
    assert message.startswith("x.jsonl, line 3 (spec.chat.fields): the record has no field 'messages'"), message
    assert shown in message and hidden not in message, message
