"""Batch inference: an exported model over a csv, jsonl or parquet file, in chunks.

>>> target = resolve(["examples/iris"], job=None, service=None)
>>> predict_file(target.export, Path("new.csv"), Path("predictions.csv"))   # → rows written

Raw columns go in (the Dataset's feature columns, categories by name); the export's fitted
preprocessing is applied by :meth:`lmspec.model.export.Exported.predict`, the very path
``lmspec serve`` answers with, so a row gets the same prediction from both. Out come, per row:
classifiers ``prediction`` (the class) and ``probability_<class>`` for each class; regressors
``prediction`` in the target's units; language models ``generated`` text (greedy decoding).

A language model trained on chat data reads records in its Dataset's chat format instead: each
is rendered by the export's chat template with the assistant's turn opened, as ``lmspec serve``
renders ``/v1/chat/completions``, and a trailing assistant turn (the reference) is left out. Out
come ``prompt`` (the last turn before the answer), ``reference`` (the record's trailing assistant
turns, or null) and ``generated``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .validator.core import Manifest, ManifestSet, load

if TYPE_CHECKING:
    from .data._read import FileInfo, Table
    from .data.turns import Message
    from .model.export import Exported
    from .standard import Chat

CHUNK_ROWS = 4096
"""Rows read, predicted and written at a time: memory stays flat whatever the file's size."""


class PredictError(Exception):
    """A user-facing problem (printed without a traceback)."""


@dataclass
class Target:
    """What ``predict`` and ``evaluate`` work on: the export and the manifests it came from."""

    manifests: ManifestSet
    export: Path
    job: Manifest | None
    """The TrainingJob that produced the export, when it is among the manifests."""

    @property
    def dataset(self) -> Manifest | None:
        if self.job is None:
            return None
        return self.manifests.get("Dataset", self.job.obj.spec.dataset)


def resolve(paths: Sequence[str], *, job: str | None, service: str | None) -> Target:
    """Load the manifests (raises ValidationFailed) and find the export: an InferenceService's
    model when one is given (or ``service`` names one), else a TrainingJob's ``<output.dir>/export``."""
    from .engine.model_dir import ModelDirError, model_dir
    from .model.export import INFO, export_dir_for

    manifests = load(list(paths))
    job_m: Manifest | None = None
    try:
        if service is not None or (manifests.of_kind("InferenceService") and job is None):
            svc = manifests.pick("InferenceService", service, option="--service")
            export = model_dir(manifests, svc)
            source = svc.obj.spec.model.training_job
            job_m = manifests.get("TrainingJob", source) if source else None
        else:
            job_m = manifests.pick("TrainingJob", job, option="--job")
            export = export_dir_for(job_m)
            if not (export / INFO).is_file():
                raise PredictError(f"no exported model at {export} (run `lmspec run {job_m.file}` first)")
    except (LookupError, ModelDirError) as exc:
        raise PredictError(str(exc)) from None
    if job_m is None:
        info = json.loads((export / INFO).read_text())
        job_m = manifests.get("TrainingJob", str(info.get("job")))
    return Target(manifests, export, job_m)


# --- predictions -------------------------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def input_columns(exported: Exported) -> list[Any]:
    """The raw columns a prediction needs, as the Dataset declared them."""
    from .data._read import ColumnSpec

    t = exported.transform
    return [ColumnSpec(n, d, f"features[{j}] ({n})")
            for j, (n, d) in enumerate(zip(t.feature_names, t.feature_dtypes, strict=True))]


def raw_inputs(exported: Exported, table: Table) -> np.ndarray:
    """Parsed columns → the array a client would send ``lmspec serve`` (the signature's input
    dtype): features in Dataset order, categories as their ids."""
    from .data._rows import null_mask
    from .data._tabular import raw_features
    from .data.errors import DataError

    for c in exported.transform.feature_names:
        missing = null_mask(table.columns[c])
        if missing.any():
            raise DataError("missing value (empty or NaN)", column=c, **table.where(int(np.argmax(missing))))
    x = raw_features(exported.transform, table)
    dtype = exported.manifest.spec.signature.inputs[0].dtype
    return x.astype(np.float32 if dtype in ("float32", "float16", "bfloat16") else dtype)


def predict_table(exported: Exported, table: Table, *, max_tokens: int = 64,
                  tokenizer_dir: Path | None = None) -> list[dict[str, Any]]:
    """One record per row of ``table``; ``tokenizer_dir`` as for :func:`generate`."""
    if exported.task == "causal-lm":
        return _generate(exported, table, max_tokens, tokenizer_dir)
    name = exported.manifest.spec.signature.inputs[0].name
    out = next(iter(exported.predict({name: raw_inputs(exported, table)}).values()))
    if exported.task == "classification":
        classes = exported.transform.classes or [str(i) for i in range(out.shape[-1])]
        probs = softmax(out)
        best = probs.argmax(axis=-1)
        return [{"prediction": classes[int(k)],
                 **{f"probability_{c}": float(p) for c, p in zip(classes, row, strict=True)}}
                for k, row in zip(best, probs, strict=True)]
    return [{"prediction": float(v)} for v in np.asarray(out, dtype=np.float32).reshape(len(table))]


def _generate(exported: Exported, table: Table, max_tokens: int, tokenizer_dir: Path | None) -> list[dict[str, Any]]:
    from .data.errors import DataError

    column = exported.transform.feature_names[0]
    texts = [t or "" for t in table.columns[column].tolist()]
    for i, text in enumerate(texts):
        problem = unicode_problem(text)
        if problem is not None:
            raise DataError(problem, column=column, **table.where(i))
    return [{"generated": g} for g in generate(exported, texts, max_tokens=max_tokens, tokenizer_dir=tokenizer_dir)]


def unicode_problem(text: str) -> str | None:
    """What makes ``text`` something no tokenizer can take, or None: JSON lets a lone surrogate
    (``"\\ud800"``) through, and UTF-8 cannot encode it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode text ({exc.reason} at character {exc.start})"
    return None


def generate(exported: Exported, prompts: Sequence[str | list[Message]], *, max_tokens: int,
             tokenizer_dir: Path | None = None) -> list[str]:
    """Greedy continuations of ``prompts`` by an exported language model (as ``lmspec serve``
    answers at temperature 0, with the same engine), stopping early at the tokenizer's
    end-of-sequence token or at the model's context length; prompts longer than the context keep
    their last tokens. A prompt is text, or a conversation rendered by the export's chat template
    with the assistant's turn opened. ``tokenizer_dir``: an export in Hugging Face format's own
    directory, whose tokenizer (and chat template) then serves, as in ``lmspec serve``."""
    lm = _language_model(exported, tokenizer_dir)
    if any(not isinstance(p, str) for p in prompts) and not lm.has_chat_template:
        raise PredictError("the exported model's tokenizer has no chat template to render conversations with")
    try:
        encoded = [lm.encode(p) if isinstance(p, str) else lm.chat_ids(p) for p in prompts]
    except ValueError as exc:  # text of a control token this tokenizer cannot encode as text
        raise PredictError(f"cannot encode a prompt: {exc}") from None
    return [lm.decode(ids) for ids in _greedy(lm, encoded, max_tokens)]


def answer_samples(exported: Exported, samples: Sequence[tuple[list[int], list[int]]], *, max_tokens: int,
                   tokenizer_dir: Path | None = None) -> list[tuple[str, str, str]]:
    """(prompt, greedy answer, reference) as text for conversations already tokenized as a
    chat Dataset holds them: (the rendered prompt's ids, the reference answer's ids). Control
    tokens are left out of the text, as the server leaves them out of its answers."""
    lm = _language_model(exported, tokenizer_dir)
    generated = _greedy(lm, [prompt for prompt, _ in samples], max_tokens)
    return [(lm.decode(prompt).strip(), lm.decode(answer).strip(), lm.decode(reference).strip())
            for (prompt, reference), answer in zip(samples, generated, strict=True)]


def _language_model(exported: Exported, tokenizer_dir: Path | None) -> Any:
    from .engine.lm import from_export
    from .engine.predictor import context_length_of
    from .standard import Placement

    return from_export(exported, context_length_of(exported.manifest), Placement(), tokenizer_dir)


def _greedy(lm: Any, encoded: Sequence[list[int]], max_tokens: int) -> list[list[int]]:
    """The generated ids of each prompt, greedy, with the serving engine."""
    import torch

    from .engine.core import Engine, EngineLimits, SamplingParams

    rows = max(1, min(32, len(encoded)))
    engine = Engine(lm.model, EngineLimits(max_sequences=rows, max_waiting=len(encoded) + 1,
                                           max_model_length=lm.context_length,
                                           kv_cache_tokens=rows * lm.context_length,
                                           prefill_chunk_tokens=512))
    seqs = [engine.add(list(ids)[-(lm.context_length - 1):] or [0], SamplingParams(max_tokens), lm.eos)
            for ids in encoded]
    with torch.inference_mode():
        while engine.has_work:
            engine.step()
    return [list(s.generated) for s in seqs]


def predictions(exported: Exported, fi: Any, *, chunk_rows: int = CHUNK_ROWS, max_tokens: int = 64,
                chat: Chat | None = None, tokenizer_dir: Path | None = None) -> Iterator[list[dict[str, Any]]]:
    """Predicted records, a chunk at a time, for the file ``fi`` (:func:`data.stream.file_info`);
    with ``chat`` (a causal LM's Dataset's chat block), records in that chat format."""
    from .data.stream import read_chunks

    if chat is not None and exported.task == "causal-lm":
        yield from _chat_predictions(exported, fi, chat, chunk_rows, max_tokens, tokenizer_dir)
        return
    for table in read_chunks(fi, input_columns(exported), chunk_rows):
        if len(table):
            yield predict_table(exported, table, max_tokens=max_tokens, tokenizer_dir=tokenizer_dir)


def _chat_predictions(exported: Exported, fi: FileInfo, chat: Chat, chunk_rows: int, max_tokens: int,
                      tokenizer_dir: Path | None) -> Iterator[list[dict[str, Any]]]:
    from .data.conversations import TEXT_ROLE, prompt_of, read_records
    from .data.errors import DataError

    if fi.format == "csv":
        raise PredictError(f"chat records are read from jsonl or parquet files, not {fi.display}")

    def answers(prompts: list[str | list[Message]], shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
        generated = generate(exported, prompts, max_tokens=max_tokens, tokenizer_dir=tokenizer_dir)
        return [{**s, "generated": g} for s, g in zip(shown, generated, strict=True)]

    prompts: list[str | list[Message]] = []
    shown: list[dict[str, Any]] = []
    for row, rec in read_records(fi):
        where: dict[str, Any] = {"file": fi.display, "row": row, "unit": fi.unit}
        messages = prompt_of(rec, chat, where)
        for k, m in enumerate(messages):
            problem = unicode_problem(m["content"])
            if problem is not None:
                raise DataError(f"message {k}: {problem}", **where)
        prompts.append(messages[0]["content"] if messages[0]["role"] == TEXT_ROLE else messages)
        shown.append({"prompt": messages[-1]["content"], "reference": reference_of(rec, chat, where)})
        if len(prompts) == chunk_rows:
            yield answers(prompts, shown)
            prompts, shown = [], []
    if prompts:
        yield answers(prompts, shown)


def reference_of(rec: dict[str, Any], chat: Chat, where: dict[str, Any]) -> str | None:
    """The record's trailing assistant turns (its reference answer), or None when it has none."""
    from .data.conversations import to_messages
    from .data.errors import DataError

    try:
        messages = to_messages(rec, chat, where)
    except DataError:  # a promptCompletion or alpaca record without its answer field
        return None
    answer: list[str] = []
    while messages and messages[-1]["role"] == "assistant":
        answer.insert(0, messages.pop()["content"])
    return "\n".join(answer) if answer else None


# --- output ------------------------------------------------------------------------------------

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def output_format(path: Path | None) -> str:
    """The format an output path asks for by its extension (stdout: jsonl)."""
    suffix = path.suffix.lower() if path is not None else ".jsonl"
    if suffix not in OUTPUT_FORMATS:
        raise PredictError(f"cannot write {path}: use a .csv, .jsonl or .parquet file name")
    return OUTPUT_FORMATS[suffix]


def output_columns(exported: Exported, *, chat: bool = False) -> list[tuple[str, str]]:
    """(name, "string" or "double") of each output column, in order: what an empty input's
    output holds, as the first record would have made it. ``chat``: a language model reading
    chat records, whose output also holds each record's prompt and reference answer."""
    if exported.task == "causal-lm":
        return [("prompt", "string"), ("reference", "string"), ("generated", "string")] if chat \
            else [("generated", "string")]
    if exported.task != "classification":
        return [("prediction", "double")]
    width = exported.manifest.spec.signature.outputs[0].shape[-1]
    classes = exported.transform.classes or [str(i) for i in range(max(width, 0))]
    return [("prediction", "string"), *((f"probability_{c}", "double") for c in classes)]


def output_target(input_path: Path, output: Path) -> Path:
    """The file ``output`` names, links resolved (a link's target is replaced, not the link),
    after refusing what cannot be written in place: the input itself (it would be truncated
    while read, also through a link or a hard link), a directory, anything but a regular file."""
    target = output.resolve()
    if target.is_dir():
        raise PredictError(f"cannot write {output}: it is a directory")
    try:
        written, read = os.stat(target), os.stat(input_path)
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise PredictError(f"cannot write {output}: {exc.strerror}") from None
    if (written.st_dev, written.st_ino) == (read.st_dev, read.st_ino) or target == input_path.resolve():
        raise PredictError(f"--output {output} is the input file {input_path}: writing it would destroy "
                           "the rows being read; write the predictions to another file")
    if not stat.S_ISREG(written.st_mode):
        raise PredictError(f"cannot write {output}: it exists and is not a regular file")
    return target


class Writer:
    """Records → csv, jsonl or parquet on a binary stream; :meth:`finish` completes the file
    (for no records at all: a csv header, an empty parquet table of the output's columns)."""

    def __init__(self, fmt: str, sink: IO[bytes], columns: list[tuple[str, str]]) -> None:
        self.format = fmt
        self._sink = sink
        self._columns = columns
        self._text: io.TextIOWrapper | None = None
        self._csv: Any = None
        self._parquet: Any = None

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self.format == "parquet":
            import pyarrow as pa

            # The declared columns' types: a chunk whose references are all absent (null) has
            # the same schema as one with text.
            types = {"string": pa.string(), "double": pa.float64()}
            schema = pa.schema([(n, types[k]) for n, k in self._columns]) \
                if [n for n, _ in self._columns] == list(records[0]) else None
            table = pa.Table.from_pylist(records, schema=schema)
            self._parquet_writer(table.schema).write_table(table)
            return
        text = self._text_stream()
        if self.format == "jsonl":
            text.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            return
        # repr() of a float round-trips exactly; csv writes str() of it, which also does.
        self._csv_writer(list(records[0])).writerows(records)

    def finish(self) -> None:
        if self.format == "parquet":
            import pyarrow as pa

            types = {"string": pa.string(), "double": pa.float64()}
            self._parquet_writer(pa.schema([(n, types[t]) for n, t in self._columns])).close()
            return
        if self.format == "csv":
            self._csv_writer([n for n, _ in self._columns])
        if self._text is not None:
            self._text.flush()
            self._text.detach()  # the caller owns the stream (a temporary file, or stdout)

    def abandon(self) -> None:
        """Let go of the stream after a failure (the caller discards what was written)."""
        if self._parquet is not None:
            # Closed now, while its stream is open: closed later by the collector, it would
            # write its footer to a closed file and print an error.
            with contextlib.suppress(Exception):
                self._parquet.close()
        if self._text is not None:
            with contextlib.suppress(Exception):
                self._text.detach()

    def _text_stream(self) -> io.TextIOWrapper:
        if self._text is None:
            self._text = io.TextIOWrapper(self._sink, encoding="utf-8", newline="")
        return self._text

    def _csv_writer(self, fieldnames: list[str]) -> Any:
        if self._csv is None:
            self._csv = csv.DictWriter(self._text_stream(), fieldnames=fieldnames)
            self._csv.writeheader()
        return self._csv

    def _parquet_writer(self, schema: Any) -> Any:
        if self._parquet is None:
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(self._sink, schema)
        return self._parquet


def predict_file(export: Path, input_path: Path, output: Path | None, *, chunk_rows: int = CHUNK_ROWS,
                 max_tokens: int = 64, progress: bool = True, chat: Chat | None = None) -> int:
    """Predict every row of ``input_path`` into ``output`` (stdout when None); returns the rows.
    ``chat``: the chat block of the Dataset a language model was trained on, whose format the
    rows are then in.

    The output appears whole or not at all: it is written to a temporary file beside it and
    renamed at the end, so a failure leaves no partial file and an earlier output untouched."""
    from tqdm import tqdm

    from .data.stream import count_rows, file_info
    from .files import atomic_write
    from .model.export import load_exported, tokenizer_dir

    fmt = output_format(output)
    target = output_target(input_path, output) if output is not None else None
    exported = load_exported(export)
    fi = file_info(input_path)
    total = count_rows(fi)

    def write_all(sink: IO[bytes]) -> int:
        writer = Writer(fmt, sink, output_columns(exported, chat=chat is not None))
        done = 0
        try:
            # disable=None: the bar shows only on a terminal, never in logs or pipes.
            with tqdm(total=total, unit="row", disable=None if progress else True,
                      dynamic_ncols=True, file=sys.stderr) as bar:
                for records in predictions(exported, fi, chunk_rows=chunk_rows, max_tokens=max_tokens,
                                           chat=chat, tokenizer_dir=tokenizer_dir(export)):
                    writer.write(records)
                    done += len(records)
                    bar.update(len(records))
        except BaseException:
            writer.abandon()
            raise
        writer.finish()
        return done

    if target is None:
        sys.stdout.flush()
        rows = _located(write_all, sys.stdout.buffer, "stdout")
        sys.stdout.buffer.flush()
        return rows
    written: list[int] = []
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda sink: written.append(_located(write_all, sink, str(output))))
    except OSError as exc:
        raise PredictError(f"cannot write {output}: {exc.strerror or exc}") from None
    return written[0]


def _located(write_all: Callable[[IO[bytes]], int], sink: IO[bytes], name: str) -> int:
    """``write_all(sink)``, a failure to read or write a file said as one line naming it (the
    input when the error names a file, else the output)."""
    try:
        return write_all(sink)
    except OSError as exc:
        raise PredictError(f"{exc.filename or name}: {exc.strerror or exc}") from None
