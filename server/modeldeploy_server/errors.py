"""One error base class carrying an HTTP status and a machine-readable reason; the app renders it."""

from __future__ import annotations


class ServerError(Exception):
    """An error a client or an operator can act on: `status` for HTTP, `reason` for machines."""

    status: int = 500
    reason: str = "internal_error"

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status

    def body(self) -> dict[str, str]:
        """The JSON body of the error (V2 clients read `error`)."""
        return {"error": self.message, "reason": self.reason}


class InvalidInput(ServerError):
    """The request is well-formed HTTP but its payload cannot be predicted on."""

    status = 400
    reason = "invalid_input"


class PayloadTooLarge(ServerError):
    status = 413
    reason = "payload_too_large"


class NotFound(ServerError):
    status = 404
    reason = "not_found"


class ModelNotReady(ServerError):
    """The model is still loading, or failed to load (`reason` then names why)."""

    status = 503
    reason = "model_loading"


class Overloaded(ServerError):
    status = 503
    reason = "overloaded"


class ModelRejectedInput(ServerError):
    """The model raised a value error on a row that passed validation (e.g. out of its range)."""

    status = 422
    reason = "model_rejected_input"


class PredictionFailed(ServerError):
    """The model raised on input that passed validation."""

    status = 500
    reason = "prediction_failed"


class ModelLoadError(ServerError):
    """Loading the model failed; the process stays up and `/ready` answers 503 with this."""

    status = 503
    reason = "load_failed"
