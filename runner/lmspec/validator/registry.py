"""Registry of every rule the validator can report, by stable id.

Ids never change meaning once published: tools (SARIF viewers, CI baselines, the conformance
suite) match on them. The spec documents each id; a test proves spec and registry agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..manifests.findings import Severity

Layer = Literal["parse", "document", "schema", "semantic", "reference", "environment"]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    layer: Layer
    summary: str


RULES: dict[str, Rule] = {}


def _rule(id: str, severity: Severity, layer: Layer, summary: str) -> str:
    RULES[id] = Rule(id, severity, layer, summary)
    return id


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

# Layer 3: rules within one manifest.
MODEL_TASK_ARCHITECTURE = _rule(
    "model.task-architecture", "error", "semantic", "The architecture cannot perform the model's task."
)
MODEL_OUTPUT_SIZE = _rule(
    "model.output-size",
    "error",
    "semantic",
    "The classifier's output width disagrees with numClasses or the architecture's last layer.",
)
MODEL_HEADS = _rule(
    "model.transformer-heads", "error", "semantic", "A transformer's width is not divisible by its number of heads."
)
MODEL_LM_SIGNATURE = _rule(
    "model.lm-signature", "error", "semantic", "A causal language model's signature is not token ids in, logits out."
)
MODEL_DERIVED_OUTPUTS = _rule(
    "model.derived-outputs",
    "error",
    "semantic",
    "An output after the first is not a classifier's label (string, [-1]) or probabilities (float32, [-1, C]).",
)
MODEL_PRETRAINED_SOURCE = _rule(
    "model.pretrained-source",
    "error",
    "semantic",
    "A pretrained architecture names none, or more than one, of path, uri and trainingJob.",
)
MODEL_HF_REVISION = _rule(
    "model.hf-revision",
    "warning",
    "semantic",
    "An hf:// reference has no revision, so the files it means change when the repository does.",
)
MODEL_HF_CONFIG = _rule(
    "model.hf-config",
    "error",
    "semantic",
    "A huggingface architecture's config gives a size or count that transformers needs positive as zero, "
    "negative or not an integer, a width its heads (or heads their key-value heads) do not divide, or heads of "
    "odd width under rotary position embeddings.",
)
DATASET_SPLIT_RATIOS = _rule("dataset.split-ratios", "error", "semantic", "Split ratios do not sum to 1.")
DATASET_SPLIT_FILES = _rule(
    "dataset.split-files", "error", "semantic", "Splits by file, but no source is assigned to the training split."
)
DATASET_UNKNOWN_COLUMN = _rule(
    "dataset.unknown-column",
    "error",
    "semantic",
    "A step or the split names a column that is neither a feature nor the target.",
)
DATASET_STEP_ORDER = _rule("dataset.step-order", "error", "semantic", "Packing needs a tokenize step before it.")
DATASET_CHAT_CONFLICT = _rule(
    "dataset.chat-conflict",
    "error",
    "semantic",
    "Chat data also declares features, a target, preprocessing steps or stratification, which do not apply to it.",
)
DATASET_CHAT_TEMPLATE = _rule(
    "dataset.chat-template",
    "error",
    "semantic",
    "The chat template is declared twice, or has no {% generation %} markers while only assistant turns are trained.",
)
DATASET_CHAT_FIELDS = _rule(
    "dataset.chat-fields",
    "warning",
    "semantic",
    "chat.fields renames a field that the declared chat format does not read.",
)
DATASET_SPLIT_UNUSED = _rule(
    "dataset.split-unused", "error", "semantic", "A source names a split, but splits are by ratio."
)
DATASET_FILTER_VALUE = _rule(
    "dataset.filter-value", "error", "semantic", "A filter's value does not fit its operator or its column's type."
)
DATASET_SOURCE_FORMAT = _rule(
    "dataset.source-format", "error", "semantic", "A source has no format and its extension does not tell one."
)
DATASET_TEXT_COLUMN = _rule(
    "dataset.text-column", "error", "semantic", "A tokenize step reads another column than plain-text sources have."
)
MODEL_NUM_CLASSES = _rule(
    "model.num-classes", "error", "semantic", "A classifier gives neither numClasses nor a fixed output width."
)
TRAININGJOB_BATCH = _rule(
    "trainingjob.batch-world-size",
    "error",
    "semantic",
    "globalBatchSize is not microBatchSize × gradientAccumulationSteps × world size.",
)
TRAININGJOB_PRECISION = _rule("trainingjob.precision-exclusive", "error", "semantic", "fp16 and bf16 are both enabled.")
TRAININGJOB_ZERO3_ONLY = _rule(
    "trainingjob.zero3-only",
    "warning",
    "semantic",
    "An option that only means something at ZeRO stage 3 is set below it.",
)
TRAININGJOB_OFFLOAD_STAGE = _rule(
    "trainingjob.offload-stage", "error", "semantic", "Optimizer offload is set without ZeRO (stage 0)."
)
TRAININGJOB_NVME_PATH = _rule("trainingjob.nvme-path", "error", "semantic", "Offload to nvme without nvmePath.")
TRAININGJOB_QLORA_ACCELERATOR = _rule(
    "trainingjob.qlora-accelerator",
    "error",
    "semantic",
    "QLoRA (4-bit quantized base) is declared for an accelerator other than cuda.",
)
INFERENCE_INLINE_SECRET = _rule(
    "inferenceservice.inline-secret",
    "error",
    "semantic",
    "An API key is written in the manifest instead of an environment variable or file.",
)
INFERENCE_MODEL_SOURCE = _rule(
    "inferenceservice.model-source", "error", "semantic", "model must name exactly one of trainingJob and path."
)
INFERENCE_KEY_SOURCE = _rule(
    "inferenceservice.key-source", "error", "semantic", "An API key source must name exactly one of env and file."
)
INFERENCE_PUBLIC_BIND = _rule(
    "inferenceservice.public-bind",
    "warning",
    "semantic",
    "The server binds to a non-loopback address without authentication.",
)
INFERENCE_REPLICA_BOUNDS = _rule(
    "inferenceservice.replica-bounds", "error", "semantic", "cluster.replicas.max is below cluster.replicas.min."
)
INFERENCE_AUTOSCALING_TARGET = _rule(
    "inferenceservice.autoscaling-target",
    "error",
    "semantic",
    "A cpu autoscaling target is above 100 percent.",
)
INFERENCE_AUTOSCALING_RANGE = _rule(
    "inferenceservice.autoscaling-range",
    "warning",
    "semantic",
    "Autoscaling is set but the replica bounds leave nothing to scale.",
)
CLUSTER_TOLERATION = _rule(
    "cluster.toleration",
    "error",
    "semantic",
    "A toleration with operator Exists has a value, or one with operator Equal has no key.",
)
CLUSTER_LABEL = _rule(
    "cluster.label",
    "error",
    "semantic",
    "A nodeSelector label or a toleration's key or value is not one Kubernetes accepts (a qualified name, "
    "a label value).",
)

# Layer 3: rules across manifests (they need the referenced manifest).
TRAININGJOB_LOSS_TASK = _rule("trainingjob.loss-task", "error", "semantic", "The loss does not fit the Model's task.")
TRAININGJOB_PREFERENCE_DATA = _rule(
    "trainingjob.preference-data",
    "error",
    "semantic",
    "A preference loss (dpo, simpo) is trained on data that is not preference pairs, or pairs with another loss.",
)
TRAININGJOB_PREFERENCE_SETTINGS = _rule(
    "trainingjob.preference-settings",
    "error",
    "semantic",
    "beta or gamma is set for a loss that does not use it, or DPO's label smoothing is 0.5 or more.",
)
TRAININGJOB_PREFERENCE_REFERENCE = _rule(
    "trainingjob.preference-reference",
    "error",
    "semantic",
    "DPO starts from a Model without trained weights, so its reference (the starting model) would be random.",
)
DATASET_PREFERENCE_OPTIONS = _rule(
    "dataset.preference-options",
    "error",
    "semantic",
    "Preference pairs are packed, or given chat.loss settings (a pair trains its answers only).",
)
TRAININGJOB_LM_TOKENIZER = _rule(
    "trainingjob.lm-tokenizer",
    "error",
    "semantic",
    "A causal language model is trained on a Dataset without a tokenize step, or on chat data with no tokenizer "
    "(none of its own, and no pretrained base's).",
)
TRAININGJOB_LM_PACK = _rule(
    "trainingjob.lm-pack",
    "error",
    "semantic",
    "A causal language model is trained on a Dataset that tokenizes but never packs.",
)
TRAININGJOB_DATASET_TASK = _rule(
    "trainingjob.dataset-task",
    "error",
    "semantic",
    "A step or setting of the Dataset does not apply to the Model's task.",
)
TRAININGJOB_DATASET_COLUMNS = _rule(
    "trainingjob.dataset-columns",
    "error",
    "semantic",
    "The Dataset's features or target cannot feed a classification or regression Model.",
)
TRAININGJOB_METRIC_TASK = _rule(
    "trainingjob.metric-task", "error", "semantic", "A metric does not fit the Model's task."
)
TRAININGJOB_CLASSES = _rule(
    "trainingjob.classes",
    "error",
    "semantic",
    "The Dataset's classes disagree with the Model's numClasses or output width.",
)
TRAININGJOB_ADAPTER_BASE = _rule(
    "trainingjob.adapter-base",
    "error",
    "semantic",
    "An adapter (LoRA, QLoRA) is declared for a Model that is not a pretrained causal language model.",
)
TRAININGJOB_CONTEXT = _rule(
    "trainingjob.context-length", "error", "semantic", "Packed sequences are longer than the Model's context length."
)
INFERENCE_PROTOCOL_TASK = _rule(
    "inferenceservice.protocol-task",
    "error",
    "semantic",
    "The OpenAI-compatible protocol is asked for a model that is not a causal language model.",
)
INFERENCE_ENGINE_PLACEMENT = _rule(
    "inferenceservice.engine-placement",
    "error",
    "semantic",
    "The engine cannot run on the declared device(s): vLLM on CPU, device indices on CPU, or the "
    "builtin engine on several devices.",
)
INFERENCE_DTYPE_DEVICE = _rule(
    "inferenceservice.dtype-device", "error", "semantic", "float16 is asked for on CPU."
)
INFERENCE_ENGINE_PROTOCOL = _rule(
    "inferenceservice.engine-protocol",
    "error",
    "semantic",
    "The vLLM engine is asked to speak a protocol other than openai.",
)
INFERENCE_KV_BUDGET = _rule(
    "inferenceservice.kv-budget",
    "error",
    "semantic",
    "engine.kvCacheTokens cannot hold one sequence of the maximum model length.",
)
INFERENCE_CONTEXT_LENGTH = _rule(
    "inferenceservice.context-length",
    "error",
    "semantic",
    "engine.maxModelLength exceeds the served Model's context length.",
)
TRAININGJOB_MEMORY_FIT = _rule(
    "trainingjob.memory-fit",
    "warning",
    "semantic",
    "resources.memoryPerDevice cannot hold the planned model states for the chosen ZeRO stage and offload.",
)

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
