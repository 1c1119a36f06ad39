"""The Open Inference Protocol's work, with no HTTP in it: plain values in (parsed bodies, the
loaded model), plain values or :class:`..errors.ApiError` out; :mod:`.routes` wires it to HTTP.

>>> work = infer_inputs(body, loaded.require_predictor(), max_batch_size=64)
>>> result = loaded.require_predictor().predict(work.arrays)
>>> infer_answer("iris", "1", body.id, infer_outputs(predictor, result, work), limit=1 << 20)
b'{"model_name":"iris","model_version":"1","outputs":[...]}'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._version import __version__
from ...data.errors import names_phrase, value_phrase
from ...engine.predictor import Loaded, top_k
from ...standard import InferenceServiceSpec, TensorSpec
from ..dataplane import GenerationParameters, sampling_for
from ..errors import ApiError
from ..generate import Sampling
from ..tensors import TensorError, decode_input, encode_output, metadata
from .protocol import InferenceRequest, RequestOutput


def server_metadata(loaded: Loaded | None) -> dict[str, Any]:
    """``GET /v2``: the server, and the ``generate`` extension once a language model is loaded."""
    extensions = []
    if loaded is not None and loaded.language_model is not None:
        extensions.append("generate")
    return {"name": "lmspec", "version": __version__, "extensions": extensions}


def model_metadata(name: str, loaded: Loaded) -> dict[str, Any]:
    """``GET /v2/models/{name}``: versions and the signature's tensors."""
    sig = loaded.require_predictor().signature
    return {"name": name, "versions": [loaded.version], "platform": "pytorch_lmspec",
            "inputs": [metadata(t) for t in sig.inputs],
            "outputs": [metadata(t) for t in sig.outputs]}


@dataclass
class Inference:
    """An inference request decoded and checked, ready to join a batch."""

    arrays: dict[str, Any]
    """The inputs by name, as the predictor takes them."""
    rows: int
    """The batch dimension every input shares."""
    outputs: list[str]
    """The outputs to answer, in the order asked for."""
    top_k: dict[str, int]
    """``top_k`` of the outputs that asked for one."""


def infer_inputs(body: InferenceRequest, predictor: Any, max_batch_size: int) -> Inference:
    """The inputs of an inference request, decoded against the signature and refused (400) when
    unknown, repeated, missing, malformed, beyond ``batching.maxBatchSize`` or not something the
    model can take; the outputs asked for, and their ``top_k``."""
    sig = predictor.signature
    known = {t.name for t in sig.inputs}
    given = {t.name: t for t in body.inputs}
    unknown = sorted(set(given) - known)
    if unknown or len(given) != len(body.inputs):
        raise ApiError(400, f"unexpected or repeated input(s) {names_phrase(unknown or list(given), 4)}; "
                       f"the model takes {sorted(known)}")
    arrays: dict[str, Any] = {}
    try:
        for spec in sig.inputs:
            if spec.name not in given:
                raise ApiError(400, f"missing input '{spec.name}'")
            t = given[spec.name]
            arrays[spec.name] = decode_input(spec, {"datatype": t.datatype, "shape": t.shape,
                                                    "data": t.data})
    except TensorError as exc:
        raise ApiError(400, str(exc)) from None
    rows = {len(a) if a.ndim else 0 for a in arrays.values()}
    n = rows.pop() if len(rows) == 1 else -1
    if n < 1 or n > max_batch_size:
        raise ApiError(400, "inputs must share a batch dimension between 1 and "
                       f"batching.maxBatchSize ({max_batch_size})")
    out_specs = {t.name: t for t in sig.outputs}
    wanted = [o.name for o in body.outputs] if body.outputs else list(out_specs)
    missing = [w for w in wanted if w not in out_specs]
    if missing:
        raise ApiError(400, f"unknown output(s) {names_phrase(missing, 4)}; the model has "
                       f"{sorted(out_specs)}")
    ks = top_ks(body.outputs or [], predictor, int(out_specs[sig.outputs[0].name].shape[-1]))
    check = getattr(predictor, "check", None)
    if check is not None:
        try:
            check(arrays)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    return Inference(arrays, n, wanted, ks)


def top_ks(outputs: list[RequestOutput], predictor: Any, classes: int) -> dict[str, int]:
    """The ``top_k`` parameter of each requested output that has one (400 when misused)."""
    ks: dict[str, int] = {}
    for o in outputs:
        k = (o.parameters or {}).get("top_k")
        if k is None:
            continue
        if o.name not in getattr(predictor, "derived", ()):
            raise ApiError(400, f"output '{o.name}': top_k applies to a classifier's label and "
                           "probabilities outputs only")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= max(classes, 1):
            raise ApiError(400, f"output '{o.name}': top_k must be an integer from 1 to the number of "
                           f"classes ({classes}), not {value_phrase(k)}")
        ks[o.name] = k
    return ks


def infer_outputs(predictor: Any, result: dict[str, Any],
                  work: Inference) -> list[tuple[str, TensorSpec, Any]]:
    """The outputs asked for, as (name, its tensor spec, its values), ``top_k`` applied."""
    specs = {t.name: t for t in predictor.signature.outputs}
    return [(w, specs[w], top_k(predictor, result, w, work.top_k[w]) if w in work.top_k else result[w])
            for w in work.outputs]


def infer_answer(name: str, version: str, request_id: str | None,
                 outputs: list[tuple[str, TensorSpec, Any]], limit: int) -> bytes:
    """The infer answer's JSON, within ``limits.maxResponseBytes`` (``limit``) and with finite
    numbers only (JSON has no infinity or NaN, and the Open Inference Protocol defines no encoding
    for them)."""
    answer: dict[str, Any] = {"model_name": name, "model_version": version}
    if request_id is not None:
        answer["id"] = request_id
    too_large = ("the response would exceed limits.maxResponseBytes ({} bytes): ask for fewer rows, "
                 "shorter inputs or fewer outputs")
    # Every element takes at least two bytes ("0,"): refuse hopeless cases before encoding.
    if sum(np.asarray(a).size for _, _, a in outputs) * 2 > limit:
        raise ApiError(400, too_large.format(limit))
    encoded = []
    for output, spec, array in outputs:
        values = np.asarray(array)
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise ApiError(400, f"output '{output}' is not finite (inf or NaN) for these inputs, and "
                           "JSON cannot carry such values; the inputs are outside the model's range")
        encoded.append(encode_output(spec, output, values))
    answer["outputs"] = encoded
    body = json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    if len(body) > limit:
        raise ApiError(400, too_large.format(limit))
    return body


def generate_sampling(spec: InferenceServiceSpec, max_model_length: int, prompt_tokens: int,
                      params: GenerationParameters) -> Sampling:
    """The sampling settings of a ``generate`` request's ``parameters`` (see
    :func:`..dataplane.sampling_for`)."""
    return sampling_for(spec, max_model_length, prompt_tokens, max_tokens=params.max_tokens,
                        temperature=params.temperature, top_p=params.top_p, stop=params.stop,
                        seed=params.seed)


def generate_answer(name: str, text: str, finish_reason: str | None) -> dict[str, Any]:
    """The ``generate`` answer of a finished generation."""
    return {"model_name": name, "model_version": "1", "text_output": text,
            "finish_reason": finish_reason}
