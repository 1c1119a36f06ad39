"""v1beta1 ⇄ the hub (v1alpha1): one :class:`~lmspec.conversion.Change` per difference.

``spec/v1beta1/changes.md`` states each change, its reason and this conversion rule, in the same
order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any

from ..v1beta1._plain import DURATION, UNIT_SECONDS, duration_seconds
from . import Change, Loss, Result, Spoke, renaming, replace_keys, value_map

API_VERSION = "lmspec.io/v1beta1"

_X = "x-"


# --- 2, 3. One shape for "where a model comes from" ----------------------------------------------

def _source_forward(fields: dict[str, tuple[str, str]]) -> Callable[[dict[str, Any], str | None], Result]:
    """Hub keys (``path``) → a ``source`` object (``{type: directory, path: …}``), in ``key``'s
    place; ``fields`` maps each hub key to the source's (type, key)."""

    def forward(owner: dict[str, Any], key: str | None) -> Result:
        given = [k for k in fields if owner.get(k) is not None]
        if not given:
            return owner, []
        first, rest = given[0], given[1:]
        kind, name = fields[first]
        source = {"type": kind, name: owner[first]}
        losses = [Loss((k,), f"{k!r} has no place beside {first!r}: v1beta1 takes exactly one source")
                  for k in rest]
        if key is None:  # the owner is itself the source: its x- keys stay where they are
            return replace_keys(owner, set(fields), source), losses
        return replace_keys(owner, set(fields), {key: source}), losses

    return forward


def _source_backward(fields: dict[str, tuple[str, str]]) -> Callable[[Any], tuple[dict[str, Any] | None, list[Loss]]]:
    by_type = {kind: (hub_key, name) for hub_key, (kind, name) in fields.items()}

    def backward(source: Any) -> tuple[dict[str, Any] | None, list[Loss]]:
        if not isinstance(source, dict) or source.get("type") not in by_type:
            return None, []
        hub_key, name = by_type[source["type"]]
        if name not in source:
            return None, []
        return replace_keys(source, {"type", name}, {hub_key: source[name]}), []

    return backward


_BASE = {"path": ("directory", "path"), "uri": ("hub", "uri"), "trainingJob": ("trainingJob", "name")}
_base_forward, _base_backward = _source_forward(_BASE), _source_backward(_BASE)


def _pretrained_forward(arch: Any) -> Result:
    if not isinstance(arch, dict) or arch.get("type") != "pretrained":
        return arch, []
    return _base_forward(arch, "source")


def _pretrained_backward(arch: Any) -> Result:
    if not isinstance(arch, dict) or arch.get("type") != "pretrained":
        return arch, []
    hub, losses = _base_backward(arch.get("source"))
    if hub is None:
        return arch, losses
    # x- keys of the source have no place in v1alpha1: the round-trip annotation keeps them.
    hub = {k: v for k, v in hub.items() if not k.startswith(_X)}
    return replace_keys(arch, {"source"}, hub), losses


_SERVED = {"trainingJob": ("trainingJob", "name"), "path": ("directory", "path")}
_served_forward, _served_backward = _source_forward(_SERVED), _source_backward(_SERVED)


def _model_source_forward(model: Any) -> Result:
    if not isinstance(model, dict):
        return model, []
    return _served_forward(model, None)


def _model_source_backward(model: Any) -> Result:
    hub, losses = _served_backward(model)
    return (model, losses) if hub is None else (hub, losses)


# --- 4. API key sources --------------------------------------------------------------------------

_KEYS = {"env": ("env", "name"), "file": ("file", "path")}
_key_forward, _key_backward = _source_forward(_KEYS), _source_backward(_KEYS)


def _api_keys_forward(keys: Any) -> Result:
    if not isinstance(keys, list):
        return keys, []
    out, losses = [], []
    for i, item in enumerate(keys):
        if isinstance(item, str):
            losses.append(Loss((i,), "an API key written inline has no place in v1beta1; name an "
                                     "environment variable or a file instead"))
            continue
        new, lost = _key_forward(item, None) if isinstance(item, dict) else (item, [])
        out.append(new)
        losses += [Loss((i, *loss.path), loss.message) for loss in lost]
    return out, losses


def _api_keys_backward(keys: Any) -> Result:
    if not isinstance(keys, list):
        return keys, []
    out = []
    for item in keys:
        hub, _ = _key_backward(item)
        out.append(item if hub is None else hub)
    return out, []


# --- 5. Precision --------------------------------------------------------------------------------

def _precision_forward(precision: Any) -> Result:
    if not isinstance(precision, dict):
        return precision, []
    fp16, bf16 = precision.get("fp16"), precision.get("bf16")
    if (fp16 is not None and not isinstance(fp16, dict)) or (bf16 is not None and not isinstance(bf16, dict)):
        return precision, []
    fp16, bf16 = fp16 or {}, bf16 or {}
    losses = []
    mode = "fp16" if fp16.get("enabled") is True else "bf16" if bf16.get("enabled") is True else "fp32"
    if mode == "fp16" and bf16.get("enabled") is True:
        losses.append(Loss(("bf16", "enabled"), "fp16 and bf16 are both enabled; v1beta1 has one mode"))
    new: dict[str, Any] = {}
    if mode != "fp32":
        new["mode"] = mode
    scaling = {k: v for k, v in fp16.items() if k != "enabled"}
    if scaling:
        new["lossScaling"] = scaling
    return replace_keys(precision, {"fp16", "bf16"}, new), losses


def _precision_backward(precision: Any) -> Result:
    if not isinstance(precision, dict):
        return precision, []
    mode, scaling = precision.get("mode", "fp32"), precision.get("lossScaling", {})
    if mode not in ("fp32", "fp16", "bf16") or not isinstance(scaling, dict):
        return precision, []
    new: dict[str, Any] = {}
    if mode == "fp16":
        new["fp16"] = {"enabled": True, **scaling}
    elif scaling:
        new["fp16"] = dict(scaling)
    if mode == "bf16":
        new["bf16"] = {"enabled": True}
    return replace_keys(precision, {"mode", "lossScaling"}, new), []


# --- 6. Chat template ----------------------------------------------------------------------------

def _template_forward(chat: Any) -> Result:
    if not isinstance(chat, dict):
        return chat, []
    inline, path = chat.get("template"), chat.get("templatePath")
    if inline is not None and not isinstance(inline, str):
        return chat, []
    losses = []
    if inline is not None:
        template: dict[str, Any] | None = {"type": "inline", "text": inline}
        if path is not None:
            losses.append(Loss(("templatePath",), "'templatePath' has no place beside 'template': "
                                                  "v1beta1 takes one template"))
    elif path is not None:
        template = {"type": "file", "path": path}
    else:
        template = None
    new = {"template": template} if template is not None else {}
    return replace_keys(chat, {"template", "templatePath"}, new), losses


def _template_backward(chat: Any) -> Result:
    if not isinstance(chat, dict) or not isinstance(chat.get("template"), dict):
        return chat, []
    template = chat["template"]
    kind = template.get("type")
    if kind == "inline" and "text" in template:
        new = {"template": template["text"]}
    elif kind == "file" and "path" in template:
        new = {"templatePath": template["path"]}
    else:
        return chat, []
    return replace_keys(chat, {"template"}, new), []  # x- keys of template: kept by the annotation


# --- 7. Durations --------------------------------------------------------------------------------

_US = UNIT_SECONDS["us"]


def _duration_text(seconds: Decimal) -> str:
    """``Decimal("0.002")`` → ``"2ms"``: the largest of s, ms and us that gives a whole number;
    else the largest that gives at least one (``1.25s``), and us below a microsecond (``0.1us``)."""
    with localcontext() as ctx:
        ctx.prec = 1000
        for unit in ("s", "ms", "us"):
            count = seconds / UNIT_SECONDS[unit]
            if count == count.to_integral_value():
                return f"{int(count)}{unit}"
        unit = next((u for u in ("s", "ms") if seconds >= UNIT_SECONDS[u]), "us")
        return f"{format((seconds / UNIT_SECONDS[unit]).normalize(), 'f')}{unit}"


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _number(value: Decimal) -> int | float:
    """A whole number of seconds as an integer while a float holds it exactly, else a float."""
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


def _durations(keys: dict[str, tuple[str, Decimal]]) -> tuple[Callable[[Any], Result], Callable[[Any], Result]]:
    """``(forward, backward)`` for number fields named with a unit (``gracePeriodSeconds``) →
    duration strings without one (``gracePeriod: 30s``); ``keys`` maps each hub key to the
    spoke's key and the hub's unit in seconds."""

    def forward(owner: Any) -> Result:
        if not isinstance(owner, dict):
            return owner, []
        out = owner
        for old, (new, unit) in keys.items():
            amount = _as_decimal(out.get(old))
            if amount is None or amount < 0 or new in out:
                continue
            with localcontext() as ctx:
                ctx.prec = 1000
                out = replace_keys(out, {old}, {new: _duration_text(amount * unit)})
        return out, []

    def backward(owner: Any) -> Result:
        if not isinstance(owner, dict):
            return owner, []
        out, losses = owner, []
        for old, (new, unit) in keys.items():
            text = out.get(new)
            if not isinstance(text, str) or not re.match(DURATION, text) or old in out:
                continue
            try:
                seconds = duration_seconds(text)
            except ArithmeticError:
                continue
            with localcontext() as ctx:
                ctx.prec = 1000
                amount = seconds / unit
            if unit == _US and amount != amount.to_integral_value():
                losses.append(Loss((new,), f"{text!r} is not a whole number of microseconds, as v1alpha1's "
                                           f"{old!r} is; rounded"))
                amount = amount.to_integral_value()
            value: int | float = int(amount) if unit == _US else _number(amount)
            out = replace_keys(out, {new}, {old: value})
        return out, losses

    return forward, backward


_SECOND = Decimal(1)
_server_forward, _server_backward = _durations({
    "gracePeriodSeconds": ("gracePeriod", _SECOND),
    "headerTimeoutSeconds": ("headerTimeout", _SECOND),
    "bodyTimeoutSeconds": ("bodyTimeout", _SECOND),
})
_limits_forward, _limits_backward = _durations({"requestTimeoutSeconds": ("requestTimeout", _SECOND)})
_batching_forward, _batching_backward = _durations({"maxQueueDelayMicroseconds": ("maxQueueDelay", _US)})

# --- The changes, in the order of changes.md ------------------------------------------------------

_ARCH_KEYS = ((("path",), ("source", "path")), (("uri",), ("source", "uri")), (("trainingJob",), ("source", "name")))
_SERVED_KEYS = ((("trainingJob",), ("name",)),)
_KEY_KEYS = ((("*", "env"), ("*", "name")), (("*", "file"), ("*", "path")))
_PRECISION_KEYS = ((("fp16", "enabled"), ("mode",)), (("bf16", "enabled"), ("mode",)), (("bf16",), ("mode",)),
                   (("fp16",), ("lossScaling",)))
_TEMPLATE_KEYS = ((("template",), ("template", "text")), (("templatePath",), ("template", "path")))


def _renamed(keys: dict[str, str]) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    return tuple(((old,), (new,)) for old, new in keys.items())


_SERVER_KEYS = {"gracePeriodSeconds": "gracePeriod", "headerTimeoutSeconds": "headerTimeout",
                "bodyTimeoutSeconds": "bodyTimeout"}

CHANGES = (
    Change("task-casing", ("Model",), ("spec", "task"), *value_map({"causal-lm": "causalLm"}),
           summary="task causal-lm is written causalLm, as the loss type is",
           words=(("causal-lm", "causalLm"),)),
    Change("pretrained-source", ("Model",), ("spec", "architecture"), _pretrained_forward, _pretrained_backward,
           summary="a pretrained base names one source: architecture.source", keys=_ARCH_KEYS,
           words=(("architecture.path", "architecture.source.path"),
                  ("architecture.uri", "architecture.source.uri"),
                  ("architecture.trainingJob", "architecture.source.name"))),
    Change("served-model", ("InferenceService",), ("spec", "model"), _model_source_forward, _model_source_backward,
           summary="spec.model is one source, {type: trainingJob, name} or {type: directory, path}",
           keys=_SERVED_KEYS, words=(("model.trainingJob", "model.name"),)),
    Change("api-key-sources", ("InferenceService",), ("spec", "auth", "apiKeys"), _api_keys_forward,
           _api_keys_backward, summary="API key sources are {type: env, name} or {type: file, path}", keys=_KEY_KEYS),
    Change("precision-mode", ("TrainingJob",), ("spec", "precision"), _precision_forward, _precision_backward,
           summary="precision.mode picks fp32, fp16 or bf16; fp16's settings are precision.lossScaling",
           keys=_PRECISION_KEYS,
           words=(("precision.fp16.enabled", "precision.mode: fp16"),
                  ("precision.bf16.enabled", "precision.mode: bf16"),
                  ("fp16.enabled", "precision.mode: fp16"), ("bf16.enabled", "precision.mode: bf16"),
                  ("precision.fp16", "precision.lossScaling"))),
    Change("chat-template", ("Dataset",), ("spec", "chat"), _template_forward, _template_backward,
           summary="chat.template is one object, {type: inline, text} or {type: file, path}", keys=_TEMPLATE_KEYS,
           words=(("chat.templatePath", "chat.template.path"), ("templatePath", "template.path"))),
    Change("server-durations", ("InferenceService",), ("spec", "server"), _server_forward, _server_backward,
           summary="server timeouts are durations: gracePeriod, headerTimeout, bodyTimeout",
           keys=_renamed(_SERVER_KEYS), words=tuple(_SERVER_KEYS.items())),
    Change("limits-durations", ("InferenceService",), ("spec", "limits"), _limits_forward, _limits_backward,
           summary="limits.requestTimeout is a duration", keys=_renamed({"requestTimeoutSeconds": "requestTimeout"}),
           words=(("requestTimeoutSeconds", "requestTimeout"),)),
    Change("batching-durations", ("InferenceService",), ("spec", "batching"), _batching_forward,
           _batching_backward, summary="batching.maxQueueDelay is a duration",
           keys=_renamed({"maxQueueDelayMicroseconds": "maxQueueDelay"}),
           words=(("maxQueueDelayMicroseconds", "maxQueueDelay"),)),
    Change("splits-type", ("Dataset",), ("spec", "splits"), *renaming("by", "type"),
           summary="splits.by is splits.type", keys=_renamed({"by": "type"}), words=(("splits.by", "splits.type"),)),
    Change("engine-type", ("InferenceService",), ("spec", "engine"), *renaming("name", "type"),
           summary="engine.name is engine.type", keys=_renamed({"name": "type"}),
           words=(("engine.name", "engine.type"),)),
)

SPOKE = Spoke(API_VERSION, CHANGES)
to_hub = SPOKE.to_hub
from_hub = SPOKE.from_hub

__all__ = ["API_VERSION", "CHANGES", "SPOKE", "from_hub", "to_hub"]
