"""The ``InferenceService`` kind: how an exported model is served over HTTP."""


from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ._base import Int, NonNegativeInt, PositiveInt, Spec
from ._plain import DURATION, duration_within
from .cluster import ServiceCluster
from .common import DirectorySource, Metadata, TrainingJobSource

Duration = Annotated[str, Field(pattern=DURATION)]
"""A duration: a decimal number and one unit, ``h``, ``m``, ``s``, ``ms`` or ``us``."""

_MAX_MICROSECONDS = Decimal(2**63 - 1) / 10**6
_NO_LIMIT = Decimal(10) ** 400  # above any float; v1alpha1's unbounded seconds fit under it

ModelSource = Annotated[TrainingJobSource | DirectorySource, Field(discriminator="type")]
"""What to serve: the model exported by a TrainingJob, or an export directory."""


class Server(Spec):
    """Network settings."""

    host: str = Field(default="127.0.0.1", examples=["0.0.0.0"])
    """Address to bind; loopback unless stated, so nothing is exposed by accident."""

    port: Annotated[Int, Field(ge=0, le=65535)] = Field(default=8080, examples=[9000])
    """TCP port; 0 picks a free port."""

    workers: PositiveInt = Field(default=1, examples=[1])
    """Server processes; each holds a copy of the model."""

    grace_period: Annotated[Duration, AfterValidator(duration_within(Decimal(0), _NO_LIMIT))] = Field(
        default="30s", examples=["10s"])
    """On SIGTERM, time allowed for in-flight requests to finish before exiting."""

    header_timeout: Annotated[Duration, AfterValidator(duration_within(Decimal(0), Decimal(3600), low_open=True))] = (
        Field(default="10s", examples=["5s"]))
    """Time a client has to send a request's headers, from connecting (or from the previous
    response on a kept-alive connection); then 408 and the connection is closed."""

    body_timeout: Annotated[Duration, AfterValidator(duration_within(Decimal(0), Decimal(3600), low_open=True))] = (
        Field(default="30s", examples=["10s"]))
    """Time a client has to send a request's body once its headers arrived; then 408."""

    max_connections: Annotated[Int, Field(ge=1, le=1_000_000)] = Field(default=1024, examples=[4096])
    """Open connections one server process holds; more get 503 and are closed at once, so slow
    clients cannot use up the process's file descriptors."""


class Batching(Spec):
    """Dynamic batching: concurrent requests share forward passes."""

    enabled: bool = Field(default=True, examples=[False])
    """Batch concurrent requests together."""

    max_batch_size: PositiveInt = Field(default=32, examples=[64])
    """Largest batch, in rows, of one forward pass."""

    max_queue_delay: Annotated[Duration, AfterValidator(duration_within(Decimal(0), _MAX_MICROSECONDS,
                                                                        whole_us=True))] = Field(
        default="2ms", examples=["500us"])
    """The longest an under-full batch waits for more requests after its oldest arrived; a server
    MAY send it sooner when no other request is expected (lmspec does after a pass that served one
    request alone)."""

    max_queue_size: PositiveInt = Field(default=256, examples=[1024])
    """Requests allowed to wait; beyond it the server answers 503 with ``Retry-After``."""


class Limits(Spec):
    """Limits checked before any work is done."""

    max_body_bytes: PositiveInt = Field(default=1_048_576, examples=[4_194_304])
    """Largest request body; larger ones get 413."""

    request_timeout: Annotated[Duration, AfterValidator(duration_within(Decimal(0), _NO_LIMIT, low_open=True))] = Field(
        default="30s", examples=["5s"])
    """Longest time a request may take, queueing included; then 504."""

    max_tokens: PositiveInt = Field(default=256, examples=[1024])
    """Upper bound on tokens generated per request (language models)."""

    max_response_bytes: PositiveInt = Field(default=8_388_608, examples=[33_554_432])
    """Largest response body of one inference request; a request whose answer would be larger
    gets 400 (a small request may ask for a large answer, such as logits over a long sequence)."""


class EnvKeySource(Spec):
    """API keys in an environment variable."""

    type: Literal["env"] = Field(examples=["env"])
    """Key source kind."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = Field(examples=["LMSPEC_API_KEYS"])
    """Environment variable holding one key, or several separated by commas."""


class FileKeySource(Spec):
    """API keys in a file."""

    type: Literal["file"] = Field(examples=["file"])
    """Key source kind."""

    path: str = Field(min_length=1, examples=["/run/secrets/api-keys"])
    """File holding one key per line, relative to the manifest's directory unless absolute."""


KeySource = Annotated[EnvKeySource | FileKeySource, Field(discriminator="type")]
"""Where API keys come from: an environment variable or a file, never the manifest itself."""


class Auth(Spec):
    """Bearer-token authentication."""

    api_keys: list[KeySource] = Field(default_factory=list, examples=[[{"type": "env", "name": "LMSPEC_API_KEYS"}]])
    """Sources of accepted keys; no authentication when empty."""

    public_health: bool = Field(default=True, examples=[False])
    """Leave health and readiness endpoints open without a key."""

    public_metrics: bool = Field(default=True, examples=[False])
    """Leave ``/metrics`` open without a key."""


class Generation(Spec):
    """Defaults for text generation (requests may override them)."""

    max_tokens: PositiveInt = Field(default=16, examples=[64])
    """Tokens generated when a request does not say."""

    temperature: float = Field(default=1.0, ge=0.0, le=2.0, examples=[0.7])
    """Sampling temperature; 0 is greedy decoding."""

    top_p: float = Field(default=1.0, gt=0.0, le=1.0, examples=[0.9])
    """Nucleus sampling threshold."""

    stop: list[str] = Field(default_factory=list, max_length=8, examples=[["\n\n"]])
    """Strings that end generation."""


class Engine(Spec):
    """How a causal language model generates text, and the engine's memory budget."""

    type: Literal["builtin", "vllm"] = Field(default="builtin", examples=["vllm"])
    """``builtin``: lmspec's own engine (KV cache, continuous batching; CPU or one CUDA device).
    ``vllm``: vLLM's OpenAI server started on loopback behind lmspec's gateway (CUDA only, models
    in Hugging Face format, protocol ``openai`` only)."""

    max_model_length: PositiveInt | None = Field(default=None, examples=[2048])
    """Longest sequence (prompt + completion) in tokens; at most the model's context length,
    which is the default."""

    max_sequences: PositiveInt = Field(default=32, examples=[64])
    """Sequences generating at once; more wait for a free place."""

    max_waiting_sequences: PositiveInt = Field(default=256, examples=[1024])
    """Sequences allowed to wait; beyond it the server answers 429 (OpenAI) or 503 (OIP) with
    ``Retry-After``."""

    kv_cache_tokens: PositiveInt | None = Field(default=None, examples=[65536])
    """KV cache budget in tokens over all running sequences; a sequence is admitted only while
    the running ones, each counted at the longest reservation (prompt + max tokens), fit. Default:
    ``maxSequences × maxModelLength``. Must hold one sequence of ``maxModelLength``."""

    prefill_chunk_tokens: PositiveInt = Field(default=512, examples=[256])
    """Prompt tokens processed between two decode steps of the running sequences: a longer
    prompt is prefilled in chunks, so it never stalls the other streams for longer than one
    chunk."""


class Placement(Spec):
    """Where the model runs and in which floating-point type."""

    device: Literal["cpu", "cuda"] = Field(default="cpu", examples=["cuda"])
    """Device type."""

    device_indices: list[NonNegativeInt] = Field(default_factory=list, max_length=64, examples=[[0]])
    """CUDA devices to use (``cuda`` only; default ``[0]``). The builtin engine uses one device;
    vLLM shards the model over all of them (tensor parallelism)."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(default="auto", examples=["bfloat16"])
    """Type of weights and activations. ``auto``: float32 on CPU; on CUDA the type the weights
    are stored in (``config.json``'s ``dtype``), float32 for lmspec exports. ``float16`` is
    refused on CPU, where its kernels are missing or slow."""


Protocol = Literal["oip-v2", "openai"]


def _default_protocols() -> list[Protocol]:
    return ["oip-v2"]


class InferenceServiceSpec(Spec):
    """What to serve and how."""

    model: ModelSource = Field(examples=[{"type": "trainingJob", "name": "iris-train"}])
    """The model to serve."""

    protocols: list[Protocol] = Field(default_factory=_default_protocols, min_length=1, examples=[["oip-v2", "openai"]])
    """Protocols to speak: the Open Inference Protocol v2, and (language models only) the
    OpenAI-compatible completions API."""

    server: Server = Field(default_factory=Server, examples=[{"port": 8080}])
    """Address, port, worker processes and shutdown grace period."""

    batching: Batching = Field(default_factory=Batching, examples=[{"maxBatchSize": 16}])
    """Dynamic batching."""

    limits: Limits = Field(default_factory=Limits, examples=[{"maxBodyBytes": 65536}])
    """Request limits."""

    auth: Auth = Field(default_factory=Auth, examples=[{"apiKeys": [{"type": "env", "name": "LMSPEC_API_KEYS"}]}])
    """Authentication."""

    generation: Generation = Field(default_factory=Generation, examples=[{"maxTokens": 32}])
    """Text generation defaults."""

    engine: Engine = Field(default_factory=Engine, examples=[{"type": "builtin", "maxSequences": 64}])
    """Generation engine of causal language models and its memory budget."""

    placement: Placement = Field(default_factory=Placement, examples=[{"device": "cuda", "dtype": "bfloat16"}])
    """Device and dtype."""

    cluster: ServiceCluster | None = Field(
        default=None, examples=[{"image": "registry.example.com/lmspec-runner:0.1.0",
                                 "replicas": {"min": 1, "max": 4},
                                 "autoscaling": {"metric": "concurrency", "target": 8}}]
    )
    """How a cluster engine (KServe, …) runs the server; ignored by ``lmspec serve``."""


class InferenceService(Spec):
    """An ``InferenceService`` manifest: how a trained model is served over HTTP — protocols,
    network, dynamic batching, limits and authentication."""

    api_version: Literal["lmspec.io/v1beta1"] = Field(examples=["lmspec.io/v1beta1"])
    """Version of the lmspec standard this manifest follows."""

    kind: Literal["InferenceService"] = Field(examples=["InferenceService"])
    """Kind of object."""

    metadata: Metadata = Field(examples=[{"name": "iris"}])
    """Name, labels, annotations and description."""

    spec: InferenceServiceSpec = Field(
        examples=[
            {
                "model": {"type": "trainingJob", "name": "iris-train"},
                "protocols": ["oip-v2"],
                "server": {"host": "127.0.0.1", "port": 8080},
            }
        ]
    )
    """The service's definition."""
