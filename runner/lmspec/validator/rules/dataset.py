"""Rules of a Dataset on its own: splits, columns, steps, sources, chat data and preference pairs."""

from __future__ import annotations

from collections.abc import Iterator

from ...domain.chat_template import has_generation_markers, needs_generation_markers
from ...manifests.light import Dataset, Filter, Pack, Tokenize
from ..rule import rule
from ._base import Index, Issue, Path, check, column_dtypes, source_format

# The rules of this module: stable ids, severity and summary (the spec documents each id).
DATASET_SPLIT_RATIOS = rule("dataset.split-ratios", "error", "semantic", "Split ratios do not sum to 1.")
DATASET_SPLIT_FILES = rule(
    "dataset.split-files", "error", "semantic", "Splits by file, but no source is assigned to the training split."
)
DATASET_UNKNOWN_COLUMN = rule(
    "dataset.unknown-column",
    "error",
    "semantic",
    "A step or the split names a column that is neither a feature nor the target.",
)
DATASET_STEP_ORDER = rule("dataset.step-order", "error", "semantic", "Packing needs a tokenize step before it.")
DATASET_CHAT_CONFLICT = rule(
    "dataset.chat-conflict",
    "error",
    "semantic",
    "Chat data also declares features, a target, preprocessing steps or stratification, which do not apply to it.",
)
DATASET_CHAT_TEMPLATE = rule(
    "dataset.chat-template",
    "error",
    "semantic",
    "The chat template is declared twice, or has no {% generation %} markers while only assistant turns are trained.",
)
DATASET_CHAT_FIELDS = rule(
    "dataset.chat-fields",
    "warning",
    "semantic",
    "chat.fields renames a field that the declared chat format does not read.",
)
DATASET_SPLIT_UNUSED = rule(
    "dataset.split-unused", "error", "semantic", "A source names a split, but splits are by ratio."
)
DATASET_FILTER_VALUE = rule(
    "dataset.filter-value", "error", "semantic", "A filter's value does not fit its operator or its column's type."
)
DATASET_SOURCE_FORMAT = rule(
    "dataset.source-format", "error", "semantic", "A source has no format and its extension does not tell one."
)
DATASET_TEXT_COLUMN = rule(
    "dataset.text-column", "error", "semantic", "A tokenize step reads another column than plain-text sources have."
)
DATASET_PREFERENCE_OPTIONS = rule(
    "dataset.preference-options",
    "error",
    "semantic",
    "Preference pairs are packed, or given chat.loss settings (a pair trains its answers only).",
)


@check("Dataset")
def _dataset_splits(d: Dataset, _: Index) -> Iterator[Issue]:
    splits = d.spec.splits
    if splits.by == "ratio":
        total = sum(splits.ratios.values())
        if abs(total - 1.0) > 1e-6:
            yield Issue(
                DATASET_SPLIT_RATIOS,
                ("spec", "splits", "ratios"),
                f"split ratios sum to {total:g}, not 1",
                "adjust the ratios so they add up to 1",
            )
    elif not any(s.split in ("train", None) for s in d.spec.sources):  # no split: training data
        yield Issue(
            DATASET_SPLIT_FILES,
            ("spec", "sources"),
            "splits are by file but no source has split: train",
            "add split: train to a source (a source without split is training data too)",
        )


@check("Dataset")
def _dataset_columns(d: Dataset, _: Index) -> Iterator[Issue]:
    if d.spec.chat is not None:
        return  # chat data has no declared columns; _dataset_chat reports what does not apply
    known = {c.name for c in d.spec.features}
    if d.spec.target is not None:
        known.add(d.spec.target.name)
    text_only = all(s.format == "text" or s.path.endswith(".txt") for s in d.spec.sources)
    if text_only:
        known.add("text")
    hint = "declare it under features or target" + (f" (known: {', '.join(sorted(known))})" if known else "")
    if d.spec.splits.stratify is not None and d.spec.splits.stratify not in known:
        yield Issue(
            DATASET_UNKNOWN_COLUMN,
            ("spec", "splits", "stratify"),
            f"stratify column {d.spec.splits.stratify!r} is not declared",
            hint,
        )
    for i, step in enumerate(d.spec.preprocessing):
        names: list[tuple[Path, str]] = []
        cols = getattr(step, "columns", None)
        if cols:
            names += [(("spec", "preprocessing", i, "columns", j), c) for j, c in enumerate(cols)]
        col = getattr(step, "column", None)
        if col is not None:
            names.append((("spec", "preprocessing", i, "column"), col))
        for path, name in names:
            if name not in known:
                yield Issue(DATASET_UNKNOWN_COLUMN, path, f"column {name!r} is not declared", hint)


@check("Dataset")
def _dataset_step_order(d: Dataset, _: Index) -> Iterator[Issue]:
    tokenized = False
    for i, step in enumerate(d.spec.preprocessing):
        if isinstance(step, Tokenize):
            tokenized = True
        elif isinstance(step, Pack) and not tokenized:
            yield Issue(
                DATASET_STEP_ORDER,
                ("spec", "preprocessing", i),
                "pack comes before any tokenize step",
                "add a tokenize step before pack",
            )


# Which ``chat.fields`` each chat format reads.
_CHAT_FIELDS = {
    "messages": {"messages", "role", "content"},
    "promptCompletion": {"prompt", "completion", "system", "role", "content"},
    "alpaca": {"instruction", "input", "output", "system"},
    "text": {"text"},
    "preference": {"prompt", "chosen", "rejected", "system", "role", "content"},
}


@check("Dataset")
def _dataset_chat(d: Dataset, _: Index) -> Iterator[Issue]:
    chat = d.spec.chat
    if chat is None:
        return
    for name in ("features", "target", "preprocessing"):
        if getattr(d.spec, name):
            yield Issue(DATASET_CHAT_CONFLICT, ("spec", name), f"chat data takes no {name}",
                   "remove it: the chat block declares the record fields and the tokenizer")
    if d.spec.splits.stratify is not None:
        yield Issue(DATASET_CHAT_CONFLICT, ("spec", "splits", "stratify"),
               "stratify does not apply to chat data", "remove it")
    if chat.template is not None and chat.template_path is not None:
        yield Issue(DATASET_CHAT_TEMPLATE, ("spec", "chat", "templatePath"),
               "the chat template is declared twice, inline and as a file", "keep one of template and templatePath")
    elif chat.template is not None and needs_generation_markers(chat) and not has_generation_markers(chat.template):
        yield Issue(DATASET_CHAT_TEMPLATE, ("spec", "chat", "template"),
               "the chat template has no {% generation %} markers, so the assistant's tokens cannot be "
               "found for the assistant-only loss",
               "enclose each assistant message and its end-of-turn token in "
               "{% generation %}…{% endgeneration %}, or set loss.trainOnPrompt: true")
    reads = _CHAT_FIELDS[chat.format]
    for name in sorted(chat.fields.model_fields_set - reads):
        field = chat.fields.model_fields[name]
        if getattr(chat.fields, name) == field.default:
            continue  # named as by default, so nothing is renamed (`lmspec render` writes them all)
        alias = field.alias or name
        yield Issue(DATASET_CHAT_FIELDS, ("spec", "chat", "fields", alias),
               f"format {chat.format!r} does not read the field {alias!r}",
               f"format {chat.format!r} reads: {', '.join(sorted(reads))}")


@check("Dataset")
def _dataset_sources(d: Dataset, _: Index) -> Iterator[Issue]:
    by_ratio = d.spec.splits.by == "ratio"
    for i, src in enumerate(d.spec.sources):
        if by_ratio and src.split is not None:
            yield Issue(
                DATASET_SPLIT_UNUSED,
                ("spec", "sources", i, "split"),
                f"this source names split {src.split!r}, but splits are by ratio",
                "remove split, or set splits.by: file",
            )
        if source_format(src.path, src.format) is None:
            yield Issue(
                DATASET_SOURCE_FORMAT,
                ("spec", "sources", i, "path"),
                f"cannot tell the format of {src.path!r} from its extension",
                "set format to one of csv, jsonl, parquet, text",
            )
    text = any(source_format(s.path, s.format) == "text" for s in d.spec.sources)
    for i, step in enumerate(d.spec.preprocessing):
        if text and isinstance(step, Tokenize) and step.column != "text":
            yield Issue(
                DATASET_TEXT_COLUMN,
                ("spec", "preprocessing", i, "column"),
                f"plain-text sources have one column, 'text'; this step reads {step.column!r}",
                "remove column (it defaults to text)",
            )


@check("Dataset")
def _dataset_filter_values(d: Dataset, _: Index) -> Iterator[Issue]:
    dtypes = column_dtypes(d)
    for i, step in enumerate(d.spec.preprocessing):
        if not isinstance(step, Filter):
            continue
        path: Path = ("spec", "preprocessing", i, "value")
        many = step.op in ("in", "notIn")
        if many and not isinstance(step.value, list):
            yield Issue(DATASET_FILTER_VALUE, path, f"{step.op} needs a list of values", "write value: [a, b]")
            continue
        if not many and isinstance(step.value, (list, dict)):
            yield Issue(DATASET_FILTER_VALUE, path, f"{step.op} needs a single value, not a list",
                   "use op in or notIn to compare with several values")
            continue
        values = step.value if many else [step.value]
        numeric = dtypes.get(step.column, "string") != "string"
        if numeric and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            yield Issue(DATASET_FILTER_VALUE, path,
                   f"column {step.column!r} is {dtypes[step.column]}; the value must be a number",
                   "write the number without quotes (true and false compare as 1 and 0: write those)")
        elif not numeric and any(isinstance(v, (list, dict)) for v in values):
            yield Issue(DATASET_FILTER_VALUE, path, "values must be scalars", "")


@check("Dataset")
def _dataset_preference(d: Dataset, _: Index) -> Iterator[Issue]:
    chat = d.spec.chat
    if chat is None or chat.format != "preference":
        return
    if chat.packing:
        yield Issue(DATASET_PREFERENCE_OPTIONS, ("spec", "chat", "packing"),
               "preference pairs cannot be packed: each pair is scored as two whole sequences",
               "remove packing")
    if "loss" in chat.model_fields_set:
        yield Issue(DATASET_PREFERENCE_OPTIONS, ("spec", "chat", "loss"),
               "a preference pair trains its two answers, nothing else: chat.loss does not apply",
               "remove chat.loss")
