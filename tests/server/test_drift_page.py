"""The /drift page: rendered server-side from the replica's own window, checked in a real headless Chromium.

Chromium is Debian's `chromium` package (`apt-get install -y chromium`). Without it the browser
test is skipped locally, and fails when `CI` is set.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from modeldeploy_drift import DriftConfig, WindowState, build_profile, evaluate
from modeldeploy_server.app import create_app
from modeldeploy_server.drift_monitor import DriftMonitor, Evaluation
from modeldeploy_server.drift_page import MAX_PLOTS, PageContext, render

from tests.fixtures.models import SavedModel
from tests.server.conftest import serve_http, wait_ready
from tests.server.drift_support import FEATURES, SHIFTED, drift_settings, save_iris_profile, shifted_rows

pytestmark = pytest.mark.anyio

REF_RGB, LIVE_RGB, DRIFTED_RGB = (0x9A, 0xA5, 0xB1), (0x25, 0x63, 0xEB), (0xDC, 0x26, 0x26)
CONTEXT = PageContext(model_name="m", model_version="1", pod="m-0", window_size=500, interval_s=30)


def page_for(data: dict[str, Any], live: dict[str, Any], **build: Any) -> str:
    profile = build_profile(data, **build)
    state = WindowState(profile, window_size=500)
    state.observe(np.column_stack([np.asarray(live[f.name], dtype=object) for f in profile.features]))
    report = evaluate(profile, state, DriftConfig(min_samples=50))
    return render(Evaluation(report, state, 1), profile.features, profile.prediction, CONTEXT)


def test_numeric_and_categorical_features_are_plotted() -> None:
    rng = np.random.default_rng(0)
    name = "<script>alert(1)</script>"
    data = {"age": rng.normal(40, 10, 2000), name: rng.choice(["a", "b", "c"], 2000)}
    live = {"age": rng.normal(55, 10, 400), name: rng.choice(["a", "b", "zzz"], 400)}
    page = page_for(data, live, categorical=[name])
    assert "<script" not in page and "&lt;script&gt;" in page  # names are escaped; no script at all
    assert not re.search(r"(src|href)=|url\(|//(?!www.w3.org/2000/svg)", page)  # nothing external
    cards = re.findall(r"<section class='card( drifted)?' data-feature='([^']*)'", page)
    assert [(bool(d), n) for d, n in cards] == [(True, "age"), (True, "&lt;script&gt;alert(1)&lt;/script&gt;")]
    assert page.count("<svg class='dist'") == 2
    assert page.count("<rect class='ref'") == page.count("<rect class='live'")
    assert "<title>other: live" in page  # the unseen category "zzz" shows as "other"
    assert "data-status='Drifted'" in page and "binned KS" in page and "chi-squared" in page


def test_many_features_are_listed_beyond_the_plotted_ones() -> None:
    rng = np.random.default_rng(1)
    data = {f"f{i}": rng.normal(size=500) for i in range(MAX_PLOTS + 5)}
    live = {f"f{i}": rng.normal(size=100) for i in range(MAX_PLOTS + 5)}
    page = page_for(data, live)
    assert page.count("<svg class='dist'") == MAX_PLOTS
    assert "Other features (not plotted)" in page and page.count("<tr><td>f") == 5


async def test_page_before_the_first_judgement(iris_model: SavedModel, tmp_path: Path) -> None:
    app = create_app(drift_settings(iris_model, save_iris_profile(iris_model, tmp_path)))
    app.state.runtime.load()  # no lifespan: nothing judges in the background
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        page = await client.get("/drift")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "has not been judged yet" in page.text


# -- in a real browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI: apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def browse(chromium: str, url: str, workdir: Path, *action: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on a loopback URL, with every way out to the network closed."""
    assert url.startswith("http://127.0.0.1:")
    profile = workdir / f"chromium-{len(list(workdir.iterdir()))}"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-domain-reliability", "--no-pings",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # no name leaves the machine
        "--proxy-server=http://127.0.0.1:9",  # anything not on loopback goes nowhere
        f"--user-data-dir={profile}", "--window-size=1280,1600", *action, url,
    ]  # fmt: skip
    env = {**os.environ, "HOME": str(workdir)}
    return subprocess.run([chromium, *flags], capture_output=True, text=True, timeout=180, env=env, check=True)


def read_png(path: Path) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit RGB/RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        prev = line
    pixels = [tuple(row[x * bpp : x * bpp + 3]) for row in rows for x in range(width)]
    return width, height, pixels  # type: ignore[return-value]


def test_the_page_in_a_real_browser(chromium: str, iris_model: SavedModel, tmp_path: Path) -> None:
    """Shifted traffic into a real server; Chromium renders /drift: the plots are there, and visible."""
    app = create_app(drift_settings(iris_model, save_iris_profile(iris_model, tmp_path), pod_name="iris-0"))
    monitor: DriftMonitor = app.state.drift
    with serve_http(app) as url:
        wait_ready(url)
        batch = {"instances": shifted_rows(200).tolist()}
        assert httpx.post(f"{url}/predict/batch", json=batch).status_code == 200
        assert monitor.evaluate_now().report.status.value == "Drifted"
        browser = tmp_path / "browser"
        browser.mkdir()
        dom = browse(chromium, f"{url}/drift", browser, "--dump-dom").stdout
        shot = tmp_path / "drift.png"
        browse(chromium, f"{url}/drift", browser, f"--screenshot={shot}")
    # The rendered DOM: one plot per feature and the prediction, bars for every reference bin.
    assert "id=\"verdict\"" in dom and "data-status=\"Drifted\"" in dom
    plots = re.findall(r"<svg class=\"dist\"[^>]*aria-label=\"([^\"]*): reference vs live\"", dom)
    assert sorted(plots) == sorted([*FEATURES, "prediction"])
    bins = sum(len(f.counts) for f in monitor.ready_profile().features)
    assert dom.count("<rect class=\"ref\"") >= bins
    assert dom.count("<rect class=\"ref\"") == dom.count("<rect class=\"live\"")
    drifted = re.findall(r"<section class=\"card drifted\" data-feature=\"([^\"]*)\"", dom)
    assert {FEATURES[j] for j in SHIFTED} <= set(drifted)
    # The screenshot: not blank, with reference bars, live bars and drifted live bars drawn.
    width, height, pixels = read_png(shot)
    assert (width, height) == (1280, 1600)
    colors = Counter(pixels)
    non_white = sum(n for rgb, n in colors.items() if min(rgb) < 235)
    assert non_white > 0.05 * width * height
    assert colors[REF_RGB] > 2000 and colors[DRIFTED_RGB] > 2000 and colors[LIVE_RGB] > 500
