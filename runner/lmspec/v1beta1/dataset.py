"""The ``Dataset`` kind: sources, columns, ordered preprocessing and splits."""


from typing import Annotated, Any, Literal

from pydantic import Field

from ._base import Int, PositiveInt, Spec
from .common import DType, Metadata, Sha256

SplitName = Literal["train", "validation", "test"]
ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


class Source(Spec):
    """One data file, or every file a glob matches."""

    path: str = Field(min_length=1, examples=["data/iris.csv", "data/shards/*.jsonl"])
    """File path or glob, relative to the manifest's directory unless absolute."""

    format: Literal["csv", "jsonl", "parquet", "text"] | None = Field(default=None, examples=["csv"])
    """File format; inferred from the extension (.csv, .jsonl, .parquet, .txt) when omitted."""

    sha256: Sha256 | None = Field(
        default=None, examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    )
    """Lowercase hex SHA-256 of the file (only for a single file, not a glob)."""

    split: SplitName | None = Field(default=None, examples=["validation"])
    """The split this source belongs to, when splits are given by file; a source without one is
    training data."""


class Column(Spec):
    """A named, typed column of the data."""

    name: ColumnName = Field(examples=["sepal_length"])
    """Column name as it appears in the source (csv header, jsonl key, parquet field); ``text``
    for plain-text sources."""

    dtype: DType = Field(default="float32", examples=["string"])
    """Element type; a value that does not parse as this type is a data error."""


class Target(Spec):
    """The column the model learns to predict."""

    name: ColumnName = Field(examples=["species"])
    """Column name."""

    dtype: DType = Field(default="string", examples=["int64"])
    """Element type of the raw values."""

    classes: list[str] | None = Field(default=None, examples=[["setosa", "versicolor", "virginica"]])
    """Class labels in index order, for classification; when omitted they are learned from the
    training split (sorted)."""


class DropNulls(Spec):
    """Drop rows with a missing or empty value in any of the columns."""

    type: Literal["dropNulls"] = Field(examples=["dropNulls"])
    """Step kind."""

    columns: list[ColumnName] | None = Field(default=None, examples=[["sepal_length"]])
    """Columns to check; all declared columns when omitted."""


class Dedupe(Spec):
    """Drop rows identical to an earlier row on the given columns."""

    type: Literal["dedupe"] = Field(examples=["dedupe"])
    """Step kind."""

    columns: list[ColumnName] | None = Field(default=None, examples=[["text"]])
    """Columns that define identity; all declared columns when omitted."""


class Filter(Spec):
    """Keep only the rows whose column compares true against a value."""

    type: Literal["filter"] = Field(examples=["filter"])
    """Step kind."""

    column: ColumnName = Field(examples=["petal_length"])
    """Column to test."""

    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "notIn"] = Field(examples=["gt"])
    """Comparison operator."""

    value: Any = Field(examples=[0.5])
    """Value to compare with; a list for ``in`` and ``notIn``."""


class Standardize(Spec):
    """Subtract the mean and divide by the standard deviation, both fitted on the training split."""

    type: Literal["standardize"] = Field(examples=["standardize"])
    """Step kind."""

    columns: list[ColumnName] | None = Field(default=None, examples=[["sepal_length", "sepal_width"]])
    """Numeric feature columns; all numeric features when omitted."""


class MinMax(Spec):
    """Scale to a range using the minimum and maximum fitted on the training split."""

    type: Literal["minMax"] = Field(examples=["minMax"])
    """Step kind."""

    columns: list[ColumnName] | None = Field(default=None, examples=[["age"]])
    """Numeric feature columns; all numeric features when omitted."""

    range: list[float] = Field(default_factory=lambda: [0.0, 1.0], min_length=2, max_length=2, examples=[[-1.0, 1.0]])
    """Target interval [low, high]."""


class LabelEncode(Spec):
    """Map string categories to integer ids; the vocabulary is fitted on the training split."""

    type: Literal["labelEncode"] = Field(examples=["labelEncode"])
    """Step kind."""

    column: ColumnName = Field(examples=["species"])
    """Column to encode (a feature or the target)."""

    unknown: Literal["error", "ignore"] = Field(default="error", examples=["ignore"])
    """What to do with a category not seen in training: fail, or map it to id -1."""


class GaussianNoise(Spec):
    """Training-time augmentation: add N(0, std²) noise to numeric features, fresh every epoch."""

    type: Literal["gaussianNoise"] = Field(examples=["gaussianNoise"])
    """Step kind."""

    std: float = Field(gt=0.0, examples=[0.05])
    """Standard deviation of the noise, in the units the column has at this step."""

    columns: list[ColumnName] | None = Field(default=None, examples=[["sepal_length"]])
    """Columns to perturb; all numeric features when omitted."""


class ByteTokenizer(Spec):
    """The built-in byte-level tokenizer: UTF-8 bytes are token ids 0-255."""

    type: Literal["byte"] = Field(examples=["byte"])
    """Tokenizer kind."""


class FileTokenizer(Spec):
    """A Hugging Face ``tokenizers`` file (``tokenizer.json``) on local disk."""

    type: Literal["file"] = Field(examples=["file"])
    """Tokenizer kind."""

    path: str = Field(min_length=1, examples=["tokenizer/tokenizer.json"])
    """Path to ``tokenizer.json``, relative to the manifest's directory unless absolute."""

    sha256: Sha256 | None = Field(
        default=None, examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    )
    """Lowercase hex SHA-256 of the file."""


Tokenizer = Annotated[ByteTokenizer | FileTokenizer, Field(discriminator="type")]


class Tokenize(Spec):
    """Turn a text column into token ids."""

    type: Literal["tokenize"] = Field(examples=["tokenize"])
    """Step kind."""

    column: ColumnName = Field(default="text", examples=["content"])
    """Text column to tokenize."""

    tokenizer: Tokenizer = Field(examples=[{"type": "byte"}])
    """Which tokenizer to use."""


class Pack(Spec):
    """Concatenate token ids across rows and cut them into fixed-length training sequences."""

    type: Literal["pack"] = Field(examples=["pack"])
    """Step kind."""

    sequence_length: PositiveInt = Field(examples=[128])
    """Tokens per sequence; at most the model's context length."""


ChatRole = Literal["system", "user", "assistant", "tool"]


class ChatFields(Spec):
    """Names of the record fields, where the data's names differ from the defaults."""

    messages: str = Field(default="messages", min_length=1, examples=["conversations"])
    """List of turns, for ``format: messages``."""

    role: str = Field(default="role", min_length=1, examples=["from"])
    """Role of a turn, inside each item of ``messages``."""

    content: str = Field(default="content", min_length=1, examples=["value"])
    """Text of a turn, inside each item of ``messages``."""

    prompt: str = Field(default="prompt", min_length=1, examples=["question"])
    """Prompt, for ``format: promptCompletion`` and ``preference``: a string, or a list of turns."""

    completion: str = Field(default="completion", min_length=1, examples=["answer"])
    """Completion, for ``format: promptCompletion``: a string, or a list of assistant turns."""

    chosen: str = Field(default="chosen", min_length=1, examples=["preferred"])
    """Preferred answer, for ``format: preference``: a string, or a list of turns."""

    rejected: str = Field(default="rejected", min_length=1, examples=["dispreferred"])
    """Dispreferred answer, for ``format: preference``: a string, or a list of turns."""

    instruction: str = Field(default="instruction", min_length=1, examples=["task"])
    """Instruction, for ``format: alpaca``."""

    input: str = Field(default="input", min_length=1, examples=["context"])
    """Optional input appended to the instruction, for ``format: alpaca``."""

    output: str = Field(default="output", min_length=1, examples=["response"])
    """Expected response, for ``format: alpaca``."""

    system: str = Field(default="system", min_length=1, examples=["system_prompt"])
    """Optional per-record system prompt, for ``promptCompletion`` and ``alpaca``."""

    text: str = Field(default="text", min_length=1, examples=["body"])
    """Document text, for ``format: text``."""


class ChatTokenizer(Spec):
    """A Hugging Face tokenizer directory: ``tokenizer.json`` and ``tokenizer_config.json``, and
    the chat template in ``chat_template.jinja`` or in ``tokenizer_config.json``."""

    type: Literal["huggingface"] = Field(examples=["huggingface"])
    """Tokenizer kind."""

    path: str = Field(min_length=1, examples=["base-model"])
    """Directory, relative to the manifest's directory unless absolute."""


class InlineTemplate(Spec):
    """A Jinja chat template written in the manifest."""

    type: Literal["inline"] = Field(examples=["inline"])
    """Template kind."""

    text: str = Field(min_length=1, examples=["{% for m in messages %}...{% endfor %}"])
    """The template."""


class FileTemplate(Spec):
    """A Jinja chat template file."""

    type: Literal["file"] = Field(examples=["file"])
    """Template kind."""

    path: str = Field(min_length=1, examples=["chat_template.jinja"])
    """Path, relative to the manifest's directory unless absolute."""


def _assistant_only() -> list[ChatRole]:
    return ["assistant"]


class ChatLoss(Spec):
    """Which tokens of a conversation the loss is computed on."""

    train_on_prompt: bool = Field(default=False, examples=[True])
    """Train on every token of the conversation, prompt and template text included. When false
    (the default), only the turns of ``roles`` are trained, and everything else is masked."""

    roles: list[ChatRole] = Field(default_factory=_assistant_only, min_length=1, examples=[["assistant"]])
    """Roles whose turns are trained. Assistant turns are found by the template's
    ``{% generation %}`` markers; other roles by rendering the conversation turn by turn."""

    end_of_turn: bool = Field(default=True, examples=[False])
    """Train the end-of-turn token that closes each trained turn, so the model learns to stop."""

    end_of_turn_token: str | None = Field(default=None, min_length=1, examples=["<|eot_id|>"])
    """The end-of-turn token; the tokenizer's end-of-sequence token when omitted."""


class Chat(Spec):
    """Records are conversations: they are converted to lists of turns, rendered with a chat
    template, tokenized, masked for the loss, fitted to the sequence length and optionally packed."""

    format: Literal["messages", "promptCompletion", "alpaca", "text", "preference"] = Field(
        default="messages", examples=["alpaca"])
    """Shape of each record: a list of role/content turns; a prompt and a completion; an alpaca
    instruction, optional input and output; plain text, trained whole without a template; or a
    preference pair: a prompt, a chosen and a rejected answer (for the ``dpo`` and ``simpo``
    losses). A preference record without the prompt field holds two whole conversations that
    share their first turns: those are the prompt."""

    fields: ChatFields = Field(default_factory=ChatFields, examples=[{"messages": "conversations",
                                                                      "role": "from", "content": "value"}])
    """Field names in the records, where they differ from the defaults."""

    role_map: dict[str, ChatRole] = Field(default_factory=dict, examples=[{"human": "user", "gpt": "assistant"}])
    """Role names in the data → the standard roles (system, user, assistant, tool)."""

    system_prompt: str | None = Field(default=None, examples=["You are a helpful assistant."])
    """System turn added to every conversation that has none."""

    tokenizer: ChatTokenizer | FileTokenizer | None = Field(
        default=None, discriminator="type", examples=[{"type": "huggingface", "path": "base-model"}])
    """Tokenizer of the model to be trained; when omitted, the runner uses the tokenizer of the
    TrainingJob's Model, where the Model provides one (a pretrained base)."""

    template: InlineTemplate | FileTemplate | None = Field(
        default=None, discriminator="type", examples=[{"type": "file", "path": "chat_template.jinja"}])
    """Jinja chat template that replaces the tokenizer's: written ``inline``, or read from a
    ``file``."""

    sequence_length: PositiveInt = Field(examples=[512])
    """Tokens per training sequence; at most the model's context length."""

    over_length: Literal["truncate", "drop"] = Field(default="truncate", examples=["drop"])
    """What happens to a conversation longer than ``sequenceLength``: cut at the length, or
    left out. Either way the run log counts them; a conversation left without a trained token is
    always left out. A preference pair is cut prompt first: the prompt loses its first tokens,
    down to half the length at the least, then the answers lose their last tokens."""

    loss: ChatLoss = Field(default_factory=ChatLoss, examples=[{"trainOnPrompt": False}])
    """Which tokens are trained."""

    packing: bool = Field(default=False, examples=[True])
    """Pack several conversations into each sequence. Positions restart at each conversation and
    no token attends to another conversation's tokens."""


Step = Annotated[
    DropNulls | Dedupe | Filter | Standardize | MinMax | LabelEncode | GaussianNoise | Tokenize | Pack,
    Field(discriminator="type"),
]


def _default_ratios() -> dict[SplitName, float]:
    return {"train": 0.8, "validation": 0.1, "test": 0.1}


class Splits(Spec):
    """How rows are divided into training, validation and test splits."""

    type: Literal["ratio", "file"] = Field(default="ratio", examples=["file"])
    """``ratio``: a seeded random partition of all rows; ``file``: each source's ``split``."""

    ratios: dict[SplitName, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=_default_ratios,
        examples=[{"train": 0.7, "validation": 0.15, "test": 0.15}],
    )
    """Fraction of rows per split, for ``type: ratio``; must sum to 1."""

    seed: Int = Field(default=0, examples=[42])
    """Seed of the split's permutation; the same seed and data give the same split everywhere."""

    stratify: ColumnName | None = Field(default=None, examples=["species"])
    """Column whose class proportions each split keeps, for ``type: ratio``."""


class DatasetSpec(Spec):
    """Where the data is, what it holds, how it is prepared and split."""

    sources: list[Source] = Field(min_length=1, examples=[[{"path": "data/iris.csv"}]])
    """Data files."""

    features: list[Column] = Field(default_factory=list, examples=[[{"name": "sepal_length", "dtype": "float32"}]])
    """Input columns in the order the model sees them; for text data, the text column."""

    target: Target | None = Field(default=None, examples=[{"name": "species", "dtype": "string"}])
    """Column to predict; omitted for language-model data, whose targets are the next tokens."""

    preprocessing: list[Step] = Field(default_factory=list, examples=[[{"type": "dropNulls"}, {"type": "standardize"}]])
    """Steps applied in order; fitted steps learn their statistics on the training split only."""

    splits: Splits = Field(default_factory=Splits, examples=[{"type": "ratio", "seed": 7}])
    """How the rows are split."""

    chat: Chat | None = Field(default=None, examples=[{"format": "messages", "sequenceLength": 512}])
    """Conversation or instruction data for a causal language model; replaces ``features``,
    ``target`` and ``preprocessing``."""

    license: str | None = Field(default=None, examples=["CC-BY-4.0"])
    """SPDX identifier or short statement of the data's licence."""


class Dataset(Spec):
    """A ``Dataset`` manifest: where the data is, what it holds, how it is prepared and how its
    rows are split into training, validation and test sets."""

    api_version: Literal["lmspec.io/v1beta1"] = Field(examples=["lmspec.io/v1beta1"])
    """Version of the lmspec standard this manifest follows."""

    kind: Literal["Dataset"] = Field(examples=["Dataset"])
    """Kind of object."""

    metadata: Metadata = Field(examples=[{"name": "iris", "description": "Fisher's iris data"}])
    """Name, labels, annotations and description."""

    spec: DatasetSpec = Field(
        examples=[
            {
                "sources": [{"path": "data/iris.csv"}],
                "features": [{"name": "sepal_length"}, {"name": "sepal_width"}],
                "target": {"name": "species", "classes": ["setosa", "versicolor", "virginica"]},
                "preprocessing": [{"type": "standardize"}, {"type": "labelEncode", "column": "species"}],
                "splits": {"type": "ratio", "seed": 7, "stratify": "species"},
            }
        ]
    )
    """The data set's definition."""
