"""Tensors of the Open Inference Protocol v2: datatypes, shapes and JSON data.

>>> spec = TensorSpec(name="features", dtype="float32", shape=[-1, 4])
>>> decode_input(spec, {"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]})
array([[1., 2., 3., 4.]], dtype=float32)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..data.errors import value_phrase
from ..standard import TensorSpec

OIP_DATATYPE: dict[str, str] = {
    "bool": "BOOL", "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "int32": "INT32",
    "int64": "INT64", "float16": "FP16", "bfloat16": "BF16", "float32": "FP32",
    "float64": "FP64", "string": "BYTES",
}
"""Manifest dtype → OIP datatype."""

NUMPY_DTYPE: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16,
    # numpy has no bfloat16; JSON carries decimal numbers anyway, so float32 holds them exactly.
    "BF16": np.float32, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


class TensorError(ValueError):
    """A request tensor that does not match the model's metadata (answered with 400)."""


def metadata(spec: TensorSpec) -> dict[str, Any]:
    """``{"name", "datatype", "shape"}`` of one tensor, as the model metadata endpoint lists it."""
    return {"name": spec.name, "datatype": OIP_DATATYPE[spec.dtype], "shape": list(spec.shape)}


def decode_input(spec: TensorSpec, tensor: dict[str, Any]) -> Any:
    """Check one request tensor against its spec and return it as a numpy array.

    ``data`` may be flat or nested, always row-major; its element count must equal the product of
    ``shape``, and ``shape`` must agree with the spec (-1 matches any size).
    """
    name = spec.name
    want = OIP_DATATYPE[spec.dtype]
    got = tensor.get("datatype")
    if got != want:
        raise TensorError(f"input '{name}': {value_phrase(got, 'datatype')} does not match the "
                          f"model's {want!r}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise TensorError(f"input '{name}': shape must be a list of non-negative integers")
    if len(shape) != len(spec.shape) or any(w != -1 and w != d for w, d in zip(spec.shape, shape, strict=True)):
        raise TensorError(f"input '{name}': {value_phrase(shape, 'shape')} does not match the model's "
                          f"{list(spec.shape)}")
    if "data" not in tensor:
        raise TensorError(f"input '{name}': no 'data' (binary tensor data is not supported)")
    try:
        array = np.asarray(tensor["data"], dtype=NUMPY_DTYPE[want])
    except (ValueError, TypeError, OverflowError):
        raise TensorError(f"input '{name}': data is not a regular array of {want} values") from None
    if want == "BYTES" and not all(isinstance(v, str) for v in array.flat):
        raise TensorError(f"input '{name}': BYTES data must be strings")
    if array.size != math.prod(shape):
        raise TensorError(f"input '{name}': {array.size} data elements do not fill "
                          f"{value_phrase(shape, 'shape')} "
                          f"({math.prod(shape)} elements)")
    return array.reshape(shape)


def encode_output(spec: TensorSpec | None, name: str, array: Any) -> dict[str, Any]:
    """One response tensor: ``{"name", "datatype", "shape", "data"}`` with flat row-major data."""
    array = np.asarray(array)
    datatype = OIP_DATATYPE[spec.dtype] if spec is not None else _datatype_of(array)
    if datatype != "BYTES":
        array = array.astype(NUMPY_DTYPE[datatype], copy=False)
    return {"name": name, "datatype": datatype, "shape": list(array.shape),
            "data": array.reshape(-1).tolist()}


def _datatype_of(array: Any) -> str:
    for oip, dtype in NUMPY_DTYPE.items():
        if oip != "BF16" and array.dtype == np.dtype(dtype):
            return oip
    return "BYTES"
