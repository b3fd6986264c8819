"""Open Inference Protocol (KServe V2) tensors: JSON and binary-extension decoding and encoding."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from modeldeploy_server.codec import decode, encode
from modeldeploy_server.errors import InvalidInput
from modeldeploy_server.formats import Outputs
from modeldeploy_server.runtime import OUTPUT_PREDICT, OUTPUT_PROBA, ModelFacts

HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ("binary_tensor_data",)

_NUMERIC: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*_NUMERIC, "BYTES")
_PLATFORMS = {"sklearn": "sklearn", "skops": "sklearn", "onnx": "onnxruntime_onnx"}


class V2Input(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: Any = None
    parameters: dict[str, Any] | None = None


class V2RequestedOutput(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class V2Request(msgspec.Struct):
    inputs: list[V2Input]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2RequestedOutput] | None = None


_DECODER = msgspec.json.Decoder(V2Request)


@dataclass(frozen=True)
class Requested:
    name: str
    binary: bool


def datatype_of(dtype: np.dtype[Any] | None) -> str:
    """The V2 datatype naming a numpy dtype (strings and objects are BYTES)."""
    if dtype is None or dtype.kind in "OUS":
        return "BYTES"
    if dtype.kind == "b":
        return "BOOL"
    prefix = {"i": "INT", "u": "UINT", "f": "FP"}[dtype.kind]
    return f"{prefix}{dtype.itemsize * 8}"


def parse_request(body: bytes, header_length: str | None) -> tuple[V2Request, bytes]:
    """The JSON part of an infer request and the binary data that follows it (if any)."""
    if header_length is None:
        return decode(body, _DECODER), b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length {header_length!r} does not fit a body of {len(body)} bytes",
            reason="invalid_request",
        )
    split = int(header_length)
    return decode(body[:split], _DECODER), body[split:]


def input_rows(request: V2Request, binary: bytes, n_features: int | None) -> np.ndarray[Any, Any]:
    """The rows of the request's single input tensor, as a 2-D float64 array."""
    if len(request.inputs) != 1:
        raise InvalidInput(
            f"expected exactly one input tensor, got {len(request.inputs)}",
            reason="wrong_input_count",
        )
    tensor = request.inputs[0]
    if tensor.datatype not in DATATYPES:
        raise InvalidInput(
            f"input {tensor.name!r}: unknown datatype {tensor.datatype!r} (one of {', '.join(DATATYPES)})",
            reason="invalid_datatype",
        )
    if any(d < 0 for d in tensor.shape) or not 1 <= len(tensor.shape) <= 2:
        raise InvalidInput(
            f"input {tensor.name!r}: shape {tensor.shape} must be [rows, features] or [features]",
            reason="wrong_shape",
        )
    size = tensor.parameters.get("binary_data_size") if tensor.parameters else None
    if size is not None:
        values = _from_binary(tensor, binary, size)
    else:
        if binary:
            raise InvalidInput("binary data was sent but no input names its binary_data_size")
        values = _from_json(tensor)
    expected = math.prod(tensor.shape)
    if values.size != expected:
        raise InvalidInput(
            f"input {tensor.name!r} has {values.size} values but shape {tensor.shape} needs {expected}",
            reason="shape_mismatch",
        )
    if len(tensor.shape) == 2:
        return values.reshape(tensor.shape)
    # One dimension: a row of features, or a column of rows for a one-feature model.
    return values.reshape(-1, 1) if n_features == 1 else values.reshape(1, -1)


def _from_json(tensor: V2Input) -> np.ndarray[Any, Any]:
    data = tensor.data
    if not isinstance(data, list):
        raise InvalidInput(f"input {tensor.name!r} needs `data` (a flat or nested array)", reason="missing_data")
    if tensor.datatype == "BYTES":
        return _numbers_from_strings(tensor.name, _flatten(data))
    try:
        array = np.array(data)
    except ValueError as exc:
        raise InvalidInput(f"input {tensor.name!r}: nested data is ragged", reason="ragged_data") from exc
    if array.size and array.dtype.kind not in "biuf":
        raise InvalidInput(
            f"input {tensor.name!r}: data of datatype {tensor.datatype} must be numbers",
            reason="not_a_number",
        )
    if tensor.datatype[0] in "IU" and array.dtype.kind == "f":
        raise InvalidInput(
            f"input {tensor.name!r}: data of datatype {tensor.datatype} must be integers",
            reason="not_an_integer",
        )
    return array.reshape(-1).astype(np.float64)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _numbers_from_strings(name: str, items: Sequence[Any]) -> np.ndarray[Any, Any]:
    """BYTES elements for a numeric model: strings (or bytes) holding numbers, like '5.1'."""
    values: list[float] = []
    try:
        for item in items:
            if isinstance(item, bytes):
                item = item.decode()
            elif not isinstance(item, str):
                raise InvalidInput(f"input {name!r}: data of datatype BYTES must be strings", reason="not_a_string")
            values.append(float(item))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f'input {name!r}: BYTES elements must hold numbers (like "5.1") for this model: {exc}',
            reason="not_a_number",
        ) from exc
    return np.array(values, dtype=np.float64)


def _from_binary(tensor: V2Input, binary: bytes, size: object) -> np.ndarray[Any, Any]:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size != len(binary):
        raise InvalidInput(
            f"input {tensor.name!r}: binary_data_size {size!r} does not match the "
            f"{len(binary)} bytes after the JSON header",
            reason="binary_size_mismatch",
        )
    if tensor.datatype == "BYTES":
        return _numbers_from_strings(tensor.name, _split_bytes(tensor.name, binary))
    dtype = _NUMERIC[tensor.datatype]
    if len(binary) % dtype.itemsize:
        raise InvalidInput(
            f"input {tensor.name!r}: {len(binary)} bytes is not a whole number of {tensor.datatype} values",
            reason="binary_size_mismatch",
        )
    return np.frombuffer(binary, dtype=dtype).astype(np.float64)


def _split_bytes(name: str, blob: bytes) -> list[bytes]:
    """BYTES elements in the binary format: each a 4-byte little-endian length, then its bytes."""
    out: list[bytes] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise InvalidInput(f"input {name!r}: truncated BYTES element", reason="bad_binary")
        (length,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        if offset + length > len(blob):
            raise InvalidInput(f"input {name!r}: truncated BYTES element", reason="bad_binary")
        out.append(blob[offset : offset + length])
        offset += length
    return out


def requested_outputs(request: V2Request, facts: ModelFacts) -> list[Requested]:
    """The outputs to send (all by default) and whether each goes as binary data."""
    params = request.parameters or {}
    default_binary = params.get("binary_data_output") is True
    if not request.outputs:
        return [Requested(name, default_binary) for name in facts.output_names]
    out = []
    for wanted in request.outputs:
        if wanted.name not in facts.output_names:
            raise InvalidInput(
                f"model {facts.name!r} has no output {wanted.name!r}; its outputs are " + ", ".join(facts.output_names),
                reason="unknown_output",
            )
        binary = (wanted.parameters or {}).get("binary_data", default_binary) is True
        out.append(Requested(wanted.name, binary))
    return out


def encode_response(
    facts: ModelFacts, request_id: str | None, outputs: Outputs, requested: list[Requested]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follows it."""
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for want in requested:
        array = outputs.labels if want.name == OUTPUT_PREDICT else outputs.proba
        if array is None:  # pragma: no cover - output_names only lists what the model gives
            raise AssertionError(f"model gave no {want.name}")
        datatype = datatype_of(array.dtype)
        tensor: dict[str, Any] = {
            "name": want.name,
            "shape": list(array.shape),
            "datatype": datatype,
        }
        if want.binary:
            blob = _to_binary(array, datatype)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            tensor["data"] = [_text(x) for x in array.reshape(-1).tolist()]
        else:
            tensor["data"] = array.reshape(-1).tolist()
        tensors.append(tensor)
    payload: dict[str, Any] = {
        "model_name": facts.name,
        "model_version": facts.version,
        "outputs": tensors,
    }
    if request_id is not None:
        payload["id"] = request_id
    header = encode(payload)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _to_binary(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1).tolist():
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=_NUMERIC[datatype]).tobytes()


def model_metadata(facts: ModelFacts) -> dict[str, Any]:
    """The V2 model metadata: input and output tensors as this server takes and gives them."""
    outputs = [
        {
            "name": OUTPUT_PREDICT,
            "datatype": datatype_of(facts.label_dtype),
            "shape": [-1] if facts.label_width is None else [-1, facts.label_width],
        }
    ]
    if facts.classes is not None:
        outputs.append(
            {
                "name": OUTPUT_PROBA,
                "datatype": datatype_of(facts.proba_dtype or np.dtype(np.float64)),
                "shape": [-1, len(facts.classes)],
            }
        )
    metadata: dict[str, Any] = {
        "name": facts.name,
        "versions": [facts.version],
        "platform": _PLATFORMS.get(facts.format, facts.format),
        "inputs": [
            {
                "name": facts.input_name,
                "datatype": datatype_of(facts.input_dtype),
                "shape": [-1, facts.n_features if facts.n_features is not None else -1],
            }
        ],
        "outputs": outputs,
    }
    if facts.classes is not None:
        metadata["parameters"] = {"classes": list(facts.classes)}
    return metadata
