"""Registry of every rule the validator can report, by stable id.

Ids never change meaning once published: tools (SARIF viewers, CI baselines, the conformance
suite) match on them. The spec documents each id; a test proves spec and registry agree.

The rules of the parse, document, schema, reference and environment layers are declared here;
each semantic rule is declared beside its check in :mod:`.rules` (adding one touches its module,
its section of the spec and its cases only), and importing this module imports those too.
"""

from __future__ import annotations

from .rule import RULES as RULES
from .rule import Layer as Layer
from .rule import Rule as Rule
from .rule import rule as _rule

# Layer 1: reading the input.
PARSE_IO = _rule("parse.io", "error", "parse", "The file cannot be read.")
PARSE_ENCODING = _rule("parse.encoding", "error", "parse", "The input is binary or not UTF-8/UTF-16 text.")
PARSE_TOO_LARGE = _rule(
    "parse.too-large", "error", "parse", "The file, or a document's alias expansion, exceeds the size limit."
)
PARSE_TOO_DEEP = _rule("parse.too-deep", "error", "parse", "Mappings and sequences are nested too deeply.")
PARSE_SYNTAX = _rule("parse.syntax", "error", "parse", "The input is not well-formed YAML or JSON.")
PARSE_DUPLICATE_KEY = _rule("parse.duplicate-key", "error", "parse", "A mapping has the same key twice.")
PARSE_KEY = _rule("parse.key", "error", "parse", "A mapping key is not a scalar.")
PARSE_TAG = _rule("parse.tag", "error", "parse", "A node carries an unsupported or mismatched YAML tag.")
PARSE_EMPTY = _rule("parse.empty", "error", "parse", "The input holds no document.")

# Layer 2: routing each document to its kind's schema.
DOCUMENT_NOT_MAPPING = _rule("document.not-mapping", "error", "document", "A document is not a mapping.")
DOCUMENT_API_VERSION = _rule(
    "document.api-version", "error", "document", "apiVersion is missing or not a supported version."
)
DOCUMENT_KIND = _rule("document.kind", "error", "document", "kind is missing or not a kind of this version.")
DOCUMENT_DEPRECATED_VERSION = _rule(
    "document.deprecated-version", "warning", "document",
    "The document's apiVersion is deprecated; the warning names its successor and the command that converts it.",
)

# Layer 2: the kind's schema.
SCHEMA_REQUIRED = _rule("schema.required", "error", "schema", "A required key is missing.")
SCHEMA_UNKNOWN_KEY = _rule(
    "schema.unknown-key",
    "error",
    "schema",
    "A key is not defined here (keys starting with x- are extensions and always allowed).",
)
SCHEMA_TYPE = _rule("schema.type", "error", "schema", "A value has the wrong type.")
SCHEMA_ENUM = _rule("schema.enum", "error", "schema", "A value is not one of the allowed values.")
SCHEMA_BOUND = _rule(
    "schema.bound", "error", "schema", "A number, string or list is outside its allowed range or length."
)
SCHEMA_PATTERN = _rule("schema.pattern", "error", "schema", "A string does not match its required pattern.")
SCHEMA_INVALID = _rule("schema.invalid", "error", "schema", "A value is invalid for another schema reason.")

# Layer 3: the semantic rules declare their ids beside their code, one module per kind;
# importing the package here registers them in this place of the catalogue.
from . import rules as _semantic  # noqa: E402, F401  (registration, in catalogue order)

# Layer 4: references between manifests.
REFERENCE_MISSING = _rule("reference.missing", "error", "reference", "A referenced manifest is not among the inputs.")
REFERENCE_DUPLICATE = _rule(
    "reference.duplicate", "error", "reference", "Two manifests of the same kind have the same name."
)
REFERENCE_WRONG_KIND = _rule(
    "reference.wrong-kind", "error", "reference", "A reference names a manifest of another kind."
)

# Layer 5: the environment (--check-env).
ENV_FILE_MISSING = _rule(
    "env.file-missing",
    "error",
    "environment",
    "A referenced data, weights or tokenizer file does not exist (or a glob matches nothing).",
)
ENV_ENGINE_UNAVAILABLE = _rule(
    "env.engine-unavailable",
    "error",
    "environment",
    "The declared engine or device is missing on this machine (no CUDA device, or no vllm package).",
)
ENV_PRETRAINED_BASE = _rule(
    "env.pretrained-base",
    "error",
    "environment",
    "A pretrained base cannot be found or read: its directory lacks config.json or safetensors weights, "
    "or an hf:// reference is not in the Hugging Face cache while HF_HUB_OFFLINE is set.",
)
ENV_OUTSIDE_PROJECT = _rule(
    "env.outside-project",
    "error",
    "environment",
    "A referenced file lies outside the manifest's and the working directory's trees and was not read.",
)
ENV_ADAPTER_MODULES = _rule(
    "env.adapter-modules",
    "error",
    "environment",
    "adapter.targetModules or adapter.modulesToSave names a module that the pretrained base's weights do not have.",
)
ENV_SHA256 = _rule("env.sha256-mismatch", "error", "environment", "A file's SHA-256 differs from the manifest's.")
ENV_CHAT_RECORDS = _rule(
    "env.chat-records",
    "error",
    "environment",
    "A chat record lacks a field the format and fields name, has a value of the wrong type, or an unknown role.",
)
ENV_CHAT_TEMPLATE = _rule(
    "env.chat-template",
    "error",
    "environment",
    "The tokenizer has no chat template, or one without {% generation %} markers for an assistant-only loss.",
)
ENV_DATA = _rule(
    "env.data",
    "error",
    "environment",
    "The data does not match the Dataset: a column is missing, a value does not parse, a label is not a class.",
)
