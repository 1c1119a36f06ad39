"""Rules of an InferenceService: model source, keys, binding, engine, placement, replicas."""

from __future__ import annotations

from collections.abc import Iterator

from ...manifests.light import InferenceService, TrainingJob
from ..rule import rule
from ._base import Index, Issue, Path, check, context_of, model_of
from .cluster import labels, tolerations

# The rules of this module: stable ids, severity and summary (the spec documents each id).
INFERENCE_INLINE_SECRET = rule(
    "inferenceservice.inline-secret",
    "error",
    "semantic",
    "An API key is written in the manifest instead of an environment variable or file.",
)
INFERENCE_MODEL_SOURCE = rule(
    "inferenceservice.model-source", "error", "semantic", "model must name exactly one of trainingJob and path."
)
INFERENCE_KEY_SOURCE = rule(
    "inferenceservice.key-source", "error", "semantic", "An API key source must name exactly one of env and file."
)
INFERENCE_PUBLIC_BIND = rule(
    "inferenceservice.public-bind",
    "warning",
    "semantic",
    "The server binds to a non-loopback address without authentication.",
)
INFERENCE_REPLICA_BOUNDS = rule(
    "inferenceservice.replica-bounds", "error", "semantic", "cluster.replicas.max is below cluster.replicas.min."
)
INFERENCE_AUTOSCALING_TARGET = rule(
    "inferenceservice.autoscaling-target",
    "error",
    "semantic",
    "A cpu autoscaling target is above 100 percent.",
)
INFERENCE_AUTOSCALING_RANGE = rule(
    "inferenceservice.autoscaling-range",
    "warning",
    "semantic",
    "Autoscaling is set but the replica bounds leave nothing to scale.",
)
INFERENCE_PROTOCOL_TASK = rule(
    "inferenceservice.protocol-task",
    "error",
    "semantic",
    "The OpenAI-compatible protocol is asked for a model that is not a causal language model.",
)
INFERENCE_ENGINE_PLACEMENT = rule(
    "inferenceservice.engine-placement",
    "error",
    "semantic",
    "The engine cannot run on the declared device(s): vLLM on CPU, device indices on CPU, or the "
    "builtin engine on several devices.",
)
INFERENCE_DTYPE_DEVICE = rule(
    "inferenceservice.dtype-device", "error", "semantic", "float16 is asked for on CPU."
)
INFERENCE_ENGINE_PROTOCOL = rule(
    "inferenceservice.engine-protocol",
    "error",
    "semantic",
    "The vLLM engine is asked to speak a protocol other than openai.",
)
INFERENCE_KV_BUDGET = rule(
    "inferenceservice.kv-budget",
    "error",
    "semantic",
    "engine.kvCacheTokens cannot hold one sequence of the maximum model length.",
)
INFERENCE_CONTEXT_LENGTH = rule(
    "inferenceservice.context-length",
    "error",
    "semantic",
    "engine.maxModelLength exceeds the served Model's context length.",
)


@check("InferenceService")
def _service_model_source(s: InferenceService, _: Index) -> Iterator[Issue]:
    src = s.spec.model
    if (src.training_job is None) == (src.path is None):
        yield Issue(
            INFERENCE_MODEL_SOURCE,
            ("spec", "model"),
            "model must name exactly one of trainingJob and path",
            "keep either trainingJob: <name> or path: <export dir>",
        )


@check("InferenceService")
def _service_secrets(s: InferenceService, _: Index) -> Iterator[Issue]:
    for i, key in enumerate(s.spec.auth.api_keys):
        path: Path = ("spec", "auth", "apiKeys", i)
        if isinstance(key, str):
            yield Issue(
                INFERENCE_INLINE_SECRET,
                path,
                "an API key is written inline in the manifest",
                "remove it from the file (and rotate it); use {env: VAR} or {file: path}",
            )
        elif (key.env is None) == (key.file is None):
            yield Issue(
                INFERENCE_KEY_SOURCE,
                path,
                "a key source must name exactly one of env and file",
                "write {env: VAR} or {file: path}",
            )


@check("InferenceService")
def _service_bind(s: InferenceService, _: Index) -> Iterator[Issue]:
    host = s.spec.server.host
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127.") and not s.spec.auth.api_keys:
        yield Issue(
            INFERENCE_PUBLIC_BIND,
            ("spec", "server", "host"),
            f"the server listens on {host} with no API keys: anyone who can reach it can use it",
            "add auth.apiKeys, or bind to 127.0.0.1",
        )


@check("InferenceService")
def _service_protocol(s: InferenceService, index: Index) -> Iterator[Issue]:
    if "openai" not in s.spec.protocols or s.spec.model.training_job is None:
        return
    job = index.get("TrainingJob", s.spec.model.training_job)
    model = model_of(job, index) if isinstance(job, TrainingJob) else None
    if model is not None and model.spec.task != "causal-lm":
        yield Issue(
            INFERENCE_PROTOCOL_TASK,
            ("spec", "protocols", s.spec.protocols.index("openai")),
            f"protocol 'openai' serves language models, but Model {model.metadata.name!r} has task {model.spec.task!r}",
            "remove 'openai' from protocols",
        )


@check("InferenceService")
def _service_placement(s: InferenceService, _: Index) -> Iterator[Issue]:
    engine, place = s.spec.engine, s.spec.placement
    if engine.name == "vllm" and place.device == "cpu":
        yield Issue(
            INFERENCE_ENGINE_PLACEMENT,
            ("spec", "engine", "name"),
            "engine 'vllm' runs on CUDA devices only, but placement.device is 'cpu'",
            "set placement.device: cuda, or use engine.name: builtin on CPU",
        )
    if place.device == "cpu" and place.device_indices:
        yield Issue(
            INFERENCE_ENGINE_PLACEMENT,
            ("spec", "placement", "deviceIndices"),
            "deviceIndices name CUDA devices, but placement.device is 'cpu'",
            "remove deviceIndices, or set placement.device: cuda",
        )
    elif len(set(place.device_indices)) != len(place.device_indices):
        yield Issue(
            INFERENCE_ENGINE_PLACEMENT,
            ("spec", "placement", "deviceIndices"),
            f"deviceIndices {place.device_indices} name a device twice",
            "list each device once",
        )
    elif engine.name == "builtin" and len(place.device_indices) > 1:
        yield Issue(
            INFERENCE_ENGINE_PLACEMENT,
            ("spec", "placement", "deviceIndices"),
            f"the builtin engine runs on one device, but deviceIndices lists {len(place.device_indices)}",
            "keep one index, or use engine.name: vllm to shard the model over several devices",
        )
    if place.device == "cpu" and place.dtype == "float16":
        yield Issue(
            INFERENCE_DTYPE_DEVICE,
            ("spec", "placement", "dtype"),
            "float16 on CPU: its kernels are missing or slow there",
            "use dtype: bfloat16 or float32 on CPU",
        )
    extra = [p for p in s.spec.protocols if p != "openai"]
    if engine.name == "vllm" and extra:
        yield Issue(
            INFERENCE_ENGINE_PROTOCOL,
            ("spec", "protocols", s.spec.protocols.index(extra[0])),
            f"engine 'vllm' serves the OpenAI-compatible API only, not {extra[0]!r}",
            "set protocols: [openai], or use engine.name: builtin",
        )


@check("InferenceService")
def _service_engine_lengths(s: InferenceService, index: Index) -> Iterator[Issue]:
    engine = s.spec.engine
    context = None
    if s.spec.model.training_job is not None:
        job = index.get("TrainingJob", s.spec.model.training_job)
        model = model_of(job, index) if isinstance(job, TrainingJob) else None
        context = context_of(model) if model is not None else None
    if engine.max_model_length is not None and context is not None and engine.max_model_length > context:
        yield Issue(
            INFERENCE_CONTEXT_LENGTH,
            ("spec", "engine", "maxModelLength"),
            f"engine.maxModelLength {engine.max_model_length} exceeds the context length {context} of "
            "the served Model",
            f"set maxModelLength to at most {context}, or leave it out (the default is the context length)",
        )
    longest = engine.max_model_length or context
    if engine.kv_cache_tokens is not None and longest is not None and engine.kv_cache_tokens < longest:
        yield Issue(
            INFERENCE_KV_BUDGET,
            ("spec", "engine", "kvCacheTokens"),
            f"kvCacheTokens {engine.kv_cache_tokens} cannot hold one sequence of {longest} tokens "
            "(the maximum model length)",
            f"raise kvCacheTokens to at least {longest}, or lower engine.maxModelLength",
        )


@check("InferenceService")
def _service_cluster(s: InferenceService, _: Index) -> Iterator[Issue]:
    cluster = s.spec.cluster
    if cluster is None:
        return
    yield from tolerations(cluster)
    yield from labels(cluster)
    low, high = cluster.replicas.min, cluster.replicas.max
    if high is not None and high < low:
        yield Issue(INFERENCE_REPLICA_BOUNDS, ("spec", "cluster", "replicas", "max"),
               f"replicas.max {high} is below replicas.min {low}",
               f"raise max to at least {low}, or lower min")
    scaling = cluster.autoscaling
    if scaling is None:
        return
    if scaling.metric == "cpu" and scaling.target > 100:
        yield Issue(INFERENCE_AUTOSCALING_TARGET, ("spec", "cluster", "autoscaling", "target"),
               f"a cpu target is a percentage of the requested CPU; {scaling.target} is above 100",
               "use a target between 1 and 100")
    if high is None or high == low:
        yield Issue(INFERENCE_AUTOSCALING_RANGE, ("spec", "cluster", "autoscaling"),
               f"autoscaling is set, but replicas stay at {low} (replicas.max is "
               + ("omitted" if high is None else "equal to min") + ")",
               f"set replicas.max above {low}, or drop autoscaling")
