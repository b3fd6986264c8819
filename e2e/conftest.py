"""e2e fixtures: the session-wide local control plane (`cluster`); every test under e2e/ is marked e2e.

- `cluster` (session): a LocalCluster started in a pytest temp dir (binaries from build.sh, built
  on first use), stopped at the end of the session, even on failure or Ctrl-C (a watchdog process
  stops it if pytest itself is killed). With MODELDEPLOY_E2E_KUBECONFIG=<path> the tests run
  against that running cluster instead (e.g. one from `python -m controlplane up`), which is left
  running.
- A failed e2e test gets a "local control plane" report section: process liveness, nodes/pods,
  and the tail of every component log; the workdir (logs, pod logs) is printed at the end.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from controlplane import Cluster, ClusterError, LocalCluster  # noqa: E402
from controlplane.binaries import ensure_binaries  # noqa: E402

KUBECONFIG_ENV = "MODELDEPLOY_E2E_KUBECONFIG"
START_TIMEOUT = float(os.environ.get("MODELDEPLOY_E2E_START_TIMEOUT", "180"))

_build: dict[str, Any] = {}  # "bin_dir" or "error", from pytest_collection_finish
_failed: list[str] = []


def _live_print(config: pytest.Config, line: str) -> None:
    """Print past pytest's output capturing (build progress, diagnostics)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            _write(reporter, line)
    else:
        _write(reporter, line)


def _write(reporter: Any, line: str) -> None:
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line, flush=True)


def _in_e2e(item: pytest.Item) -> bool:
    return Path(str(item.fspath)).resolve().is_relative_to(E2E_DIR)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _in_e2e(item):
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries before any test starts (the first build takes many minutes and must not
    count against a test's timeout), and only if e2e tests were selected."""
    if os.environ.get(KUBECONFIG_ENV) or not any(_in_e2e(i) for i in session.items):
        return
    if session.config.option.collectonly:
        return
    try:
        _build["bin_dir"] = ensure_binaries(
            progress=lambda line: _live_print(session.config, f"[e2e] {line}")
        )
    except Exception as e:  # reported by the `cluster` fixture, so unit tests still run
        _build["error"] = e


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed or not _in_e2e(item):
        return
    _failed.append(item.nodeid)
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if isinstance(cluster, Cluster):
        try:
            text = cluster.diagnostics(lines=25)
        except Exception as e:  # diagnostics must never hide the real failure
            text = f"(no diagnostics: {e})"
        report.sections.append(("local control plane", text))


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster e2e tests run on: kubeconfig, env, kubectl(...), plus LocalCluster extras."""
    config = request.config
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        yield _external(Path(external), config)
        return
    if "error" in _build:
        raise _build["error"]
    bin_dir = _build.get("bin_dir") or ensure_binaries(
        progress=lambda line: _live_print(config, f"[e2e] {line}")
    )
    workdir = tmp_path_factory.mktemp("controlplane", numbered=True)
    local = LocalCluster(workdir, bin_dir)
    atexit.register(local.stop)  # idempotent; covers exits that skip fixture teardown
    _live_print(config, f"[e2e] starting the local control plane in {workdir}")
    try:
        local.start(timeout=START_TIMEOUT)
    except ClusterError:
        _live_print(config, f"[e2e] control plane failed to start; logs in {local.logs_dir}")
        raise
    _live_print(
        config,
        f"[e2e] control plane up in {local.started_in:.1f}s: {local.api_server}, "
        f"pods {local.pod_cidr}, services {local.service_cidr}",
    )
    try:
        yield local
    finally:
        if _failed:
            _live_print(config, "[e2e] some e2e tests failed; state of the control plane:")
            try:
                _live_print(config, local.diagnostics(lines=40))
            except Exception as e:
                _live_print(config, f"(no diagnostics: {e})")
        local.stop()
        _live_print(
            config,
            f"[e2e] control plane stopped; logs kept in {local.logs_dir}, "
            f"pod logs in {local.kubelet_dir / 'pods'}",
        )


def _external(kubeconfig: Path, config: pytest.Config) -> Cluster:
    if not kubeconfig.exists():
        raise ClusterError(f"{KUBECONFIG_ENV}={kubeconfig}: no such file")
    state = kubeconfig.parent / "cluster.json"
    found: Cluster
    if state.exists():
        found = local = LocalCluster.attach(kubeconfig.parent)
        dead = [n for n, ok in local.running().items() if not ok]
        if dead:
            raise ClusterError(
                f"cluster in {kubeconfig.parent} is not (fully) running: {', '.join(dead)} down"
            )
    else:
        found = Cluster(kubeconfig, ensure_binaries())
    res = found.kubectl("version", "-o", "json", check=False, timeout=30)
    if res.returncode != 0:
        raise ClusterError(f"{KUBECONFIG_ENV}={kubeconfig}: cluster not reachable:\n{res.stderr}")
    _live_print(config, f"[e2e] using the running cluster of {kubeconfig} (left running)")
    return found
