"""Bodies in and out: size-capped reads, msgspec JSON decoding with readable errors, encoding."""

from __future__ import annotations

import zlib
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from modeldeploy_server.errors import InvalidInput, PayloadTooLarge, ServerError

T = TypeVar("T")

JSON = "application/json"
_encoder = msgspec.json.Encoder()


class PredictRequest(msgspec.Struct):
    features: list[float]
    class_probabilities: bool = False


class BatchRequest(msgspec.Struct):
    instances: list[list[float]]
    class_probabilities: bool = False


PREDICT_DECODER = msgspec.json.Decoder(PredictRequest)
BATCH_DECODER = msgspec.json.Decoder(BatchRequest)
ANY_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def decode(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """The body decoded and type-checked; a 400 that says what and where when it is not."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid request: {exc}", reason="invalid_request") from exc
    except msgspec.DecodeError as exc:
        hint = ""
        if b"NaN" in body or b"Infinity" in body:
            hint = " (NaN and Infinity are not valid JSON numbers, and are not accepted)"
        if not body.strip():
            raise InvalidInput("the request body is empty", reason="malformed_json") from exc
        raise InvalidInput(f"malformed JSON: {exc}{hint}", reason="malformed_json") from exc


def encode(payload: Any) -> bytes:
    return _encoder.encode(payload)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(payload), status_code=status, media_type=JSON)


def error_response(error: ServerError) -> Response:
    return json_response(error.body(), error.status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it (or its decompression) passes `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise ServerError(
            f"unsupported Content-Encoding {encoding!r} (use gzip, deflate or none)",
            reason="unsupported_encoding",
            status=415,
        )
    return _decompress(body, encoding, limit)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"body is not valid {encoding}: {exc}", reason="bad_encoding") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body is over the limit of {limit} bytes")
    return out
