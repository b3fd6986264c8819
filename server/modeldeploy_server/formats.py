"""Model formats behind one small Predictor interface: sklearn (joblib), skops and ONNX."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from modeldeploy_server.errors import ModelLoadError

Format = Literal["sklearn", "skops", "onnx"]

PICKLE_FORMATS: frozenset[str] = frozenset({"sklearn"})
_SUFFIXES: dict[str, Format] = {".onnx": "onnx", ".skops": "skops"}


def guess_format(configured: str, suffix: str) -> Format:
    """The format setting, or for `auto` the one the file suffix names (sklearn otherwise)."""
    if configured == "auto":
        return _SUFFIXES.get(suffix, "sklearn")
    if configured in ("sklearn", "skops", "onnx"):
        return configured  # type: ignore[return-value]
    raise ModelLoadError(f"unknown model format {configured!r}", reason="unknown_format")


@dataclass(frozen=True)
class Outputs:
    """What one model call gives for n rows: labels (n,) or (n, k), and probabilities (n, c)."""

    labels: np.ndarray[Any, Any]
    proba: np.ndarray[Any, Any] | None


class Predictor(Protocol):
    """A loaded model: facts known at load time and one vectorized call."""

    n_features: int | None
    input_dtype: np.dtype[Any]
    input_name: str
    classes: np.ndarray[Any, Any] | None
    """Class labels, in the column order of `Outputs.proba`; None for regressors."""

    def predict(self, rows: np.ndarray[Any, Any]) -> Outputs: ...


class SklearnPredictor:
    """Any object with sklearn's `predict` (and maybe `predict_proba`) API."""

    input_name = "input-0"

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "predict", None)):
            raise ModelLoadError(
                f"the loaded {type(model).__name__} has no predict() method",
                reason="invalid_model",
            )
        self._model = model
        n_features = getattr(model, "n_features_in_", None)
        self.n_features = int(n_features) if n_features is not None else None
        self.input_dtype = np.dtype(np.float64)
        classes = getattr(model, "classes_", None)
        # Single-output classifiers only: multi-output ones give lists and are served via predict.
        if hasattr(model, "predict_proba") and isinstance(classes, np.ndarray) and classes.ndim == 1:
            self.classes: np.ndarray[Any, Any] | None = classes
        else:
            self.classes = None

    def predict(self, rows: np.ndarray[Any, Any]) -> Outputs:
        if self.classes is not None:
            # One call gives both: the label is the most probable class.
            proba = np.asarray(self._model.predict_proba(rows))
            return Outputs(labels=self.classes.take(proba.argmax(axis=1)), proba=proba)
        return Outputs(labels=np.asarray(self._model.predict(rows)), proba=None)


def load_sklearn(path: Path) -> SklearnPredictor:
    import joblib

    return SklearnPredictor(joblib.load(path))


def load_skops(path: Path, trusted: list[str]) -> SklearnPredictor:
    try:
        import skops.io as sio
    except ImportError as exc:  # pragma: no cover - depends on the image
        raise ModelLoadError("format skops needs the skops package", reason="missing_runtime") from exc
    untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(trusted))
    if untrusted:
        raise ModelLoadError(
            "the skops file holds types that are not trusted: "
            + ", ".join(untrusted)
            + " (add them to MODELDEPLOY_SKOPS_TRUSTED_TYPES if you trust this file)",
            reason="untrusted_types",
        )
    return SklearnPredictor(sio.load(path, trusted=trusted or None))


_ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class OnnxPredictor:
    """An ONNX graph with one 2-D input; two outputs (label, probabilities) make a classifier."""

    def __init__(self, path: Path, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the image
            raise ModelLoadError("format onnx needs the onnxruntime package", reason="missing_runtime") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"not a loadable ONNX model: {exc}", reason="invalid_model") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 2:
            raise ModelLoadError("only ONNX models with one 2-D input tensor are supported", reason="invalid_model")
        self.input_name = str(inputs[0].name)
        width = inputs[0].shape[1]
        self.n_features = width if isinstance(width, int) else None
        if inputs[0].type not in _ONNX_DTYPES:
            raise ModelLoadError(f"unsupported ONNX input type {inputs[0].type}", reason="invalid_model")
        self.input_dtype = np.dtype(_ONNX_DTYPES[inputs[0].type])
        outputs = self._session.get_outputs()
        self._output_names = [o.name for o in outputs]
        self._zipmap = len(outputs) > 1 and outputs[1].type.startswith("seq(map")
        self.classes = _onnx_class_labels(path) if len(outputs) > 1 else None

    def predict(self, rows: np.ndarray[Any, Any]) -> Outputs:
        result = self._session.run(self._output_names, {self.input_name: rows})
        labels = np.asarray(result[0])
        if len(result) == 1:
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            return Outputs(labels=labels, proba=None)
        if self._zipmap:
            keys = self.classes.tolist() if self.classes is not None else sorted(result[1][0])
            proba = np.array([[row[k] for k in keys] for row in result[1]], dtype=np.float32)
        else:
            proba = np.asarray(result[1])
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        return Outputs(labels=labels, proba=proba)


def _onnx_class_labels(path: Path) -> np.ndarray[Any, Any] | None:
    """Class labels stored by skl2onnx in the classifier node, if the onnx package is there."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the image
        return None
    graph = onnx.load(str(path), load_external_data=False).graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in ("classlabels_int64s", "classlabels_ints") and attr.ints:
                return np.asarray(list(attr.ints), dtype=np.int64)
            if attr.name == "classlabels_strings" and attr.strings:
                return np.asarray([s.decode() for s in attr.strings], dtype=object)
    return None


def load(fmt: Format, path: Path, *, trusted_types: list[str], threads: int) -> Predictor:
    """Deserialize the (already digest-checked) file at `path` in format `fmt`."""
    try:
        if fmt == "onnx":
            return OnnxPredictor(path, threads)
        if fmt == "skops":
            return load_skops(path, trusted_types)
        return load_sklearn(path)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"could not load {path.name} as {fmt}: {type(exc).__name__}: {exc}",
            reason="invalid_model",
        ) from exc
