"""Model loading: sources, sha256 pinning before unpickling, cache, formats, readable failures."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from modeldeploy_server.runtime import LoadState, ModelRuntime

from tests.fixtures import models
from tests.fixtures.models import SavedModel, sha256_of

from .conftest import settings_for


class FileServer:
    """Serves files from a dict on 127.0.0.1, counting requests; `fail` forces status codes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        self.fail: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                if outer.fail:
                    self.send_error(outer.fail.pop(0))
                    return
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


class _Booby:
    """Unpickling this creates a marker file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def booby_trap(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "unpickled"
    path = tmp_path / "trap.joblib"
    path.write_bytes(pickle.dumps(_Booby(marker)))
    return path, marker


def load(saved: SavedModel | None = None, **overrides: Any) -> ModelRuntime:
    runtime = ModelRuntime(settings_for(saved, **overrides) if saved is not None else _bare(**overrides))
    runtime.load()
    return runtime


def _bare(**overrides: Any) -> Any:
    from modeldeploy_server.settings import ServerSettings

    return ServerSettings(**{"model_name": "m", "model_version": "v1", **overrides})


def test_plain_path_and_file_uri(iris_model: SavedModel) -> None:
    for uri in (str(iris_model.path), iris_model.path.as_uri()):
        runtime = load(iris_model, model_uri=uri)
        assert runtime.state is LoadState.READY, runtime.error
        facts = runtime.ready()
        assert facts.n_features == 4
        assert facts.classes == ("setosa", "versicolor", "virginica")
        assert facts.sha256 == iris_model.sha256
        assert facts.format == "sklearn"


def test_http_download_is_verified_and_cached(iris_model: SavedModel, file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/models/iris.joblib"] = iris_model.path.read_bytes()
    uri = f"{file_server.url}/models/iris.joblib"
    cache = tmp_path / "cache"
    first = load(iris_model, model_uri=uri, cache_dir=str(cache))
    second = load(iris_model, model_uri=uri, cache_dir=str(cache))
    assert first.state is second.state is LoadState.READY
    assert file_server.hits["/models/iris.joblib"] == 1  # the second load used the cache
    cached = cache / f"sha256-{iris_model.sha256}.joblib"
    assert sha256_of(cached) == iris_model.sha256
    assert not [p for p in cache.iterdir() if p.name.startswith(".download-")]


def test_corrupted_cache_entry_is_downloaded_again(
    iris_model: SavedModel, file_server: FileServer, tmp_path: Path
) -> None:
    file_server.files["/iris.joblib"] = iris_model.path.read_bytes()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"sha256-{iris_model.sha256}.joblib").write_bytes(b"garbage")
    runtime = load(iris_model, model_uri=f"{file_server.url}/iris.joblib", cache_dir=str(cache))
    assert runtime.state is LoadState.READY
    assert file_server.hits["/iris.joblib"] == 1


def test_digest_mismatch_refuses_before_unpickling(
    booby_trap: tuple[Path, Path], file_server: FileServer, tmp_path: Path
) -> None:
    path, marker = booby_trap
    file_server.files["/trap.joblib"] = path.read_bytes()
    for uri in (str(path), f"{file_server.url}/trap.joblib"):
        runtime = load(model_uri=uri, model_sha256="ab" * 32, cache_dir=str(tmp_path / "c"))
        assert runtime.state is LoadState.FAILED
        assert runtime.error is not None
        assert runtime.error.reason == "digest_mismatch"
        assert sha256_of(path) in runtime.error.message
        assert not marker.exists()
    # A bad download is never left in the cache under the pinned name.
    assert not list((tmp_path / "c").glob("sha256-*.joblib"))


def test_unpinned_pickle_is_refused(booby_trap: tuple[Path, Path]) -> None:
    path, marker = booby_trap
    runtime = load(model_uri=str(path))
    assert runtime.state is LoadState.FAILED
    assert runtime.error is not None
    assert runtime.error.reason == "unverified_pickle"
    assert "MODELDEPLOY_MODEL_SHA256" in runtime.error.message
    assert "MODELDEPLOY_ALLOW_UNVERIFIED" in runtime.error.message
    assert not marker.exists()


def test_allow_unverified_loads_an_unpinned_pickle(iris_model: SavedModel, caplog: pytest.LogCaptureFixture) -> None:
    runtime = load(model_uri=str(iris_model.path), allow_unverified=True)
    assert runtime.state is LoadState.READY
    assert any("UNVERIFIED" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("/nonexistent/model.joblib", "model_not_found"),
        ("file:///nonexistent/model.joblib", "model_not_found"),
        ("ftp://host/model.joblib", "unsupported_uri"),  # s3://, gs://, pvc://: see test_sources_s3.py
        ("file://otherhost/model.joblib", "unsupported_uri"),
    ],
)
def test_bad_sources(uri: str, reason: str) -> None:
    runtime = load(model_uri=uri, model_sha256="a" * 64)
    assert runtime.state is LoadState.FAILED
    assert runtime.error is not None
    assert runtime.error.reason == reason


def test_no_model_configured() -> None:
    runtime = load()
    assert runtime.error is not None
    assert runtime.error.reason == "no_model"
    assert "MODELDEPLOY_MODEL_URI" in runtime.error.message


def test_http_errors(
    iris_model: SavedModel, file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("modeldeploy_server.sources.time.sleep", lambda s: None)
    missing = load(iris_model, model_uri=f"{file_server.url}/nope.joblib", cache_dir=str(tmp_path))
    assert missing.error is not None
    assert missing.error.reason == "download_failed"
    assert "HTTP 404" in missing.error.message
    assert file_server.hits["/nope.joblib"] == 1  # a 404 is not retried

    file_server.files["/flaky.joblib"] = iris_model.path.read_bytes()
    file_server.fail = [503, 502]
    flaky = load(iris_model, model_uri=f"{file_server.url}/flaky.joblib", cache_dir=str(tmp_path))
    assert flaky.state is LoadState.READY
    assert file_server.hits["/flaky.joblib"] == 3

    file_server.fail = [500, 500, 500]
    down = load(
        iris_model,
        model_uri=f"{file_server.url}/flaky.joblib",
        model_sha256=None,
        allow_unverified=True,
        cache_dir=str(tmp_path),
    )
    assert down.error is not None
    assert down.error.reason == "download_failed"
    assert "after 3 attempts" in down.error.message


def test_unwritable_cache_dir_falls_back_to_temp(
    iris_model: SavedModel, file_server: FileServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    file_server.files["/iris.joblib"] = iris_model.path.read_bytes()
    runtime = load(iris_model, model_uri=f"{file_server.url}/iris.joblib", cache_dir=str(blocker / "cache"))
    assert runtime.state is LoadState.READY, runtime.error


def test_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "dict.joblib"
    joblib.dump({"weights": [1, 2]}, path)
    runtime = load(model_uri=str(path), model_sha256=sha256_of(path))
    assert runtime.error is not None
    assert runtime.error.reason == "invalid_model"
    assert "no predict() method" in runtime.error.message

    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"not a pickle at all")
    runtime = load(model_uri=str(garbage), model_sha256=sha256_of(garbage))
    assert runtime.error is not None
    assert runtime.error.reason == "invalid_model"


def test_failure_is_logged_with_reason(booby_trap: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    load(model_uri=str(booby_trap[0]))
    record = next(r for r in caplog.records if "failed to load" in r.getMessage())
    assert record.levelname == "ERROR"
    assert record.reason == "unverified_pickle"  # type: ignore[attr-defined]
    assert (record.model_name, record.model_version) == ("m", "v1")  # type: ignore[attr-defined]


# -- skops -------------------------------------------------------------------------------------


def test_skops_loads_with_default_trusted_types(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    model, X = models.iris_logreg()
    saved = models.save_skops(model, X, tmp_path / "iris.skops")
    runtime = load(model_uri=str(saved.path))  # a safe format: no pin required
    assert runtime.state is LoadState.READY, runtime.error
    assert runtime.ready().format == "skops"
    out = runtime._predict_checked(X[:5])
    assert out.labels.tolist() == model.predict(X[:5]).tolist()


def test_skops_refuses_untrusted_types_unless_listed(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    import operator

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = models.iris()
    model = make_pipeline(FunctionTransformer(operator.neg), models.LogisticRegression(max_iter=1000)).fit(X, y)
    saved = models.save_skops(model, X, tmp_path / "pipe.skops")
    refused = load(model_uri=str(saved.path))
    assert refused.error is not None
    assert refused.error.reason == "untrusted_types"
    assert "_operator.neg" in refused.error.message
    trusted = load(model_uri=str(saved.path), skops_trusted_types="_operator.neg")
    assert trusted.state is LoadState.READY, trusted.error
    assert trusted._predict_checked(X[:3]).labels.tolist() == model.predict(X[:3]).tolist()


# -- ONNX --------------------------------------------------------------------------------------


@pytest.mark.parametrize("zipmap", [False, True])
def test_onnx_classifier(tmp_path: Path, zipmap: bool) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    model, X = models.binary_forest()
    saved = models.save_onnx(model, X, tmp_path / "forest.onnx", zipmap=zipmap)
    runtime = load(model_uri=str(saved.path))
    assert runtime.state is LoadState.READY, runtime.error
    facts = runtime.ready()
    assert (facts.format, facts.n_features, facts.classes) == ("onnx", 8, (0, 1))
    assert facts.input_dtype == np.float32
    out = runtime._predict_checked(runtime.validate(X[:20]))
    assert out.labels.tolist() == model.predict(X[:20]).tolist()
    assert out.proba is not None
    np.testing.assert_allclose(out.proba, model.predict_proba(X[:20]), atol=1e-5)


def test_onnx_regressor(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    model, X = models.ridge()
    saved = models.save_onnx(model, X, tmp_path / "ridge.onnx")
    runtime = load(model_uri=str(saved.path), model_format="onnx")
    facts = runtime.ready()
    assert facts.classes is None
    out = runtime._predict_checked(runtime.validate(X[:10]))
    np.testing.assert_allclose(out.labels, model.predict(X[:10]), rtol=1e-4, atol=1e-3)


def test_onnx_garbage_is_a_readable_failure(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x00not onnx")
    runtime = load(model_uri=str(path))
    assert runtime.error is not None
    assert runtime.error.reason == "invalid_model"
    assert "ONNX" in runtime.error.message


def test_format_setting_beats_the_suffix(iris_model: SavedModel, tmp_path: Path) -> None:
    odd = tmp_path / "model.bin"
    odd.write_bytes(iris_model.path.read_bytes())
    runtime = load(iris_model, model_uri=str(odd), model_format="sklearn")
    assert runtime.state is LoadState.READY
    wrong = load(iris_model, model_uri=str(odd), model_format="onnx")
    assert wrong.error is not None
    assert wrong.error.reason == "invalid_model"


def test_warm_up_sees_multi_output_regressors(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    X, _ = models.iris()
    model = LinearRegression().fit(X[:, :2], X[:, 2:])
    saved = models.save_joblib(model, X[:, :2], tmp_path / "multi.joblib")
    runtime = load(saved)
    facts = runtime.ready()
    assert facts.label_width == 2
    assert facts.classes is None


def test_load_warnings_are_logged_with_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pickle from another scikit-learn version loads, and says so once, in the log."""
    model, X = models.iris_logreg()
    with monkeypatch.context() as patched:
        patched.setattr("sklearn.base.__version__", "0.0.1")
        saved = models.save_joblib(model, X, tmp_path / "old.joblib")
    runtime = load(saved)
    assert runtime.state is LoadState.READY
    lines = [r for r in caplog.records if r.getMessage().startswith("while loading:")]
    assert len(lines) == 1
    assert "InconsistentVersionWarning" in lines[0].getMessage()
    assert "0.0.1" in lines[0].getMessage()
    assert lines[0].model_name == "m"  # type: ignore[attr-defined]
