"""The KServe peer: a scikit-learn model in kserve.Model, served by kserve.ModelServer (KServe 0.21).

KServe's own sklearnserver is not published on PyPI ("not intended for use outside KServe Frameworks
Images"); this does what it does (joblib.load, sync predict on the decoded V2 tensor) but predicts the
whole tensor in one vectorized call and returns both `predict` and `predict_proba`, like the other
servers. Run with the kserve venv:
    python kserve_app.py --model_name rf --model_path rf.joblib --http_port P --enable_grpc false [--workers N]
KServe binds its REST server to 0.0.0.0 unconditionally; the benchmark keeps to 127.0.0.1, so the
bind address is taken from BENCH_HOST (default 127.0.0.1) here.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import joblib
import kserve
from kserve import Model, ModelServer
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest import server as rest_server

_rest_init = rest_server.RESTServer.__init__


def _init_on_host(self: Any, *args: Any, **kwargs: Any) -> None:
    _rest_init(self, *args, **kwargs)
    self.config.host = os.environ.get("BENCH_HOST", "127.0.0.1")


rest_server.RESTServer.__init__ = _init_on_host  # type: ignore[method-assign]


class SKLearnProbaModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.ready = False

    def load(self) -> bool:
        self._model = joblib.load(self.path)
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        rows = payload.inputs[0].as_numpy()
        labels = self._model.predict(rows)
        proba = self._model.predict_proba(rows)
        out_labels = InferOutput(name="predict", shape=list(labels.shape), datatype="INT64")
        out_labels.set_data_from_numpy(labels.astype("int64"), binary_data=False)
        out_proba = InferOutput(name="predict_proba", shape=list(proba.shape), datatype="FP64")
        out_proba.set_data_from_numpy(proba, binary_data=False)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[out_labels, out_proba],
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    model = SKLearnProbaModel(args.model_name, args.model_path)
    model.load()
    ModelServer().start([model])
