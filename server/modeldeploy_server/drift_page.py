"""The /drift page: this replica's verdict as HTML with inline SVG plots, rendered server-side.

Self-contained (inline CSS, no script, no external resource; served with a CSP that forbids
any): one card per feature, most significant first, each with reference vs live shares per
reference bin (numeric) or per category (categorical), its test, statistic, p-values, PSI,
JS distance and a drifted badge; the dataset verdict and the window at the top.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from modeldeploy_drift import CategoricalProfile, DriftStatus, FeatureDrift, FeatureProfile, NumericProfile

from modeldeploy_server.drift_monitor import Evaluation

MAX_PLOTS: Final = 60
"""Features plotted (most significant first); the rest are listed in a table."""
CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_W, _H = 560, 190
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 44, 8, 10, 42
_REF, _LIVE, _LIVE_DRIFTED = "#9aa5b1", "#2563eb", "#dc2626"
_BADGE = {
    DriftStatus.DRIFTED: ("Drifted", "bad"),
    DriftStatus.NO_DRIFT: ("No drift", "ok"),
    DriftStatus.INSUFFICIENT: ("Insufficient data", "muted"),
    DriftStatus.UNKNOWN: ("Unknown", "muted"),
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1f2933}
header{background:#fff;border-bottom:1px solid #d9e2ec;padding:16px 24px}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:0}
.verdict{display:flex;gap:24px;flex-wrap:wrap;align-items:center;margin-top:8px}
.kv{color:#52606d}.kv b{color:#1f2933}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fill,minmax(588px,1fr));gap:16px}
.card{background:#fff;border:1px solid #d9e2ec;border-radius:8px;padding:12px 14px}
.card.drifted{border-color:#f5a3a3;box-shadow:0 0 0 2px #fde2e2}
.head{display:flex;justify-content:space-between;align-items:center;gap:8px;margin-bottom:6px}
.badge{display:inline-block;border-radius:999px;padding:2px 10px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.bad{background:#fde2e2;color:#b91c1c}.badge.ok{background:#dcfce7;color:#166534}
.badge.muted{background:#e4e7eb;color:#52606d}.badge.big{font-size:15px;padding:4px 14px}
table.stats{border-collapse:collapse;width:100%;margin-top:4px;font-variant-numeric:tabular-nums}
table.stats th,table.stats td{text-align:left;padding:2px 8px 2px 0;font-size:12px}
table.stats th{color:#52606d;font-weight:500}
.legend{font-size:12px;color:#52606d}.sw{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
.note{color:#7b8794;font-size:12px}section.rest{grid-column:1/-1}
svg.dist{max-width:100%;height:auto}svg text{font:10px system-ui,sans-serif;fill:#52606d}
"""


@dataclass(frozen=True)
class PageContext:
    """What the page says about where it comes from."""

    model_name: str
    model_version: str
    pod: str | None
    window_size: int
    interval_s: float


def render(evaluation: Evaluation | None, features: Sequence[FeatureProfile], prediction: FeatureProfile | None,
           context: PageContext) -> str:
    """The whole HTML page (evaluation None: not judged yet)."""
    title = f"Drift - {context.model_name} {context.model_version}"
    refresh = max(5, round(context.interval_s))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{refresh}'><title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(evaluation, context),
    ]
    if evaluation is None:
        parts.append("<main><p class='note'>The window has not been judged yet.</p></main>")
    else:
        parts.append(_cards(evaluation, features, prediction))
    parts.append("</body></html>")
    return "".join(parts)


def _header(evaluation: Evaluation | None, ctx: PageContext) -> str:
    pod = f" on pod <b>{_e(ctx.pod)}</b>" if ctx.pod else ""
    head = f"<header><h1>Drift of {_e(ctx.model_name)} <span class='kv'>{_e(ctx.model_version)}</span></h1>"
    head += f"<div class='kv'>This replica's live inputs vs the training profile{pod}. Judged every "
    head += f"{ctx.interval_s:g}s; the page refreshes itself.</div>"
    if evaluation is None:
        return head + "</header>"
    r = evaluation.report
    label, tone = _BADGE[r.status]
    items = [
        f"<span id='verdict' class='badge big {tone}' data-status='{r.status.value}'>{label}</span>",
        _kv("dataset p-value", _num(r.p_value)),
        _kv("max JS distance", _num(r.score)),
        _kv("window", f"{r.window_rows} / {ctx.window_size} rows"),
        _kv("features drifted", f"{len(r.drifted_features)} of {len(r.tested_features)} tested"),
        _kv("test level", f"alpha {r.alpha:g}, {_e(r.correction)} correction, min {r.min_samples} rows"),
        _kv("checked", f"{r.checked_at:%Y-%m-%d %H:%M:%S} UTC"),
    ]
    if evaluation.workers > 1:
        items.append(_kv("workers merged", str(evaluation.workers)))
    reason = f"<div class='note'>{_e(r.reason)}</div>" if r.reason else ""
    return head + f"<div class='verdict'>{''.join(items)}</div>{reason}</header>"


def _cards(evaluation: Evaluation, features: Sequence[FeatureProfile], prediction: FeatureProfile | None) -> str:
    report = evaluation.report
    window = evaluation.window.window_counts()
    slices = evaluation.window.cell_slices()
    entries = {f.name: f for f in report.features}
    order = sorted(range(len(features)), key=lambda i: _rank(entries.get(features[i].name)))
    cards: list[str] = []
    rest: list[str] = []
    for i in order:
        feature = features[i]
        entry = entries.get(feature.name)
        if len(cards) < MAX_PLOTS:
            cards.append(_card(feature, entry, window[slices[i]], kind="feature"))
        else:
            rest.append(_rest_row(feature, entry))
    if prediction is not None:
        cards.append(_card(prediction, report.prediction, window[slices[-1]], kind="prediction"))
    out = f"<main>{''.join(cards)}"
    if rest:
        out += "<section class='card rest'><h2>Other features (not plotted)</h2><table class='stats'>"
        out += "<tr><th>feature</th><th>test</th><th>p (adj.)</th><th>JS</th><th>PSI</th><th></th></tr>"
        out += "".join(rest) + "</table></section>"
    return out + "</main>"


def _rank(entry: FeatureDrift | None) -> tuple[int, float, float]:
    if entry is None or entry.p_value is None:
        return (2, 2.0, 0.0)
    p = entry.p_adjusted if entry.p_adjusted is not None else entry.p_value
    return (0 if entry.drifted else 1, p, -(entry.js or 0.0))


def _card(feature: FeatureProfile, entry: FeatureDrift | None, live: np.ndarray[tuple[int], np.dtype[np.int64]],
          *, kind: str) -> str:
    drifted = entry is not None and entry.drifted
    if entry is None or entry.p_value is None:
        badge = "<span class='badge muted'>not tested</span>"
    elif drifted:
        badge = "<span class='badge bad'>drifted</span>"
    else:
        badge = "<span class='badge ok'>no drift</span>"
    title = "prediction" if kind == "prediction" else _e(feature.name)
    sub = f" <span class='kv'>({feature.type}{', not part of the verdict' if kind == 'prediction' else ''})</span>"
    labels, ref, cur = _cells(feature, live)
    plot = _plot(labels, ref, cur, drifted, name=feature.name)
    return (
        f"<section class='card{' drifted' if drifted else ''}' data-feature='{_e(feature.name)}' data-kind='{kind}'>"
        f"<div class='head'><h2>{title}{sub}</h2>{badge}</div>{plot}"
        f"<div class='legend'><span class='sw' style='background:{_REF}'></span>reference"
        f"<span class='sw' style='background:{_LIVE_DRIFTED if drifted else _LIVE}'></span>live window</div>"
        f"{_stats(entry)}</section>"
    )


def _cells(feature: FeatureProfile, live: np.ndarray[tuple[int], np.dtype[np.int64]]
           ) -> tuple[list[str], list[float], list[float]]:
    """Bar labels and reference / live shares (missing, other shown only when present)."""
    ref_counts = feature.reference_cells().astype(np.float64)
    live_counts = live.astype(np.float64)
    if isinstance(feature, NumericProfile):
        edges = [_short(e) for e in feature.edges]
        labels = [f"<= {edges[0]}" if edges else "all"]
        labels += [f"({a}, {b}]" for a, b in itertools.pairwise(edges)]
        if edges:
            labels.append(f"> {edges[-1]}")
        labels.append("missing")
    else:
        assert isinstance(feature, CategoricalProfile)
        labels = [*feature.categories, "other", "missing"]
    keep = list(range(len(labels)))
    extras = [len(labels) - 1] if isinstance(feature, NumericProfile) else [len(labels) - 2, len(labels) - 1]
    for j in extras:
        if ref_counts[j] == 0 and live_counts[j] == 0:
            keep.remove(j)
    ref_total, live_total = ref_counts.sum() or 1.0, live_counts.sum() or 1.0
    return (
        [labels[j] for j in keep],
        [float(ref_counts[j] / ref_total) for j in keep],
        [float(live_counts[j] / live_total) for j in keep],
    )


def _plot(labels: list[str], ref: list[float], live: list[float], drifted: bool, *, name: str) -> str:
    n = len(labels)
    top = max([*ref, *live, 1e-9])
    top = _nice(top)
    inner_w, inner_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
    slot = inner_w / max(n, 1)
    bar = max(1.0, min(slot * 0.42, 36.0))
    color = _LIVE_DRIFTED if drifted else _LIVE
    base = _PAD_T + inner_h
    out = [
        f"<svg class='dist' role='img' aria-label='{_e(name)}: reference vs live' width='{_W}' height='{_H}' "
        f"viewBox='0 0 {_W} {_H}' xmlns='http://www.w3.org/2000/svg'>"
    ]
    for k in range(5):  # horizontal grid with share labels
        y = base - inner_h * k / 4
        out.append(f"<line x1='{_PAD_L}' x2='{_W - _PAD_R}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e4e7eb'/>")
        out.append(f"<text x='{_PAD_L - 4}' y='{y + 3:.1f}' text-anchor='end'>{_percent(top * k / 4)}</text>")
    for j in range(n):
        x = _PAD_L + j * slot + (slot - 2 * bar) / 2
        for offset, share, cls, fill in ((0.0, ref[j], "ref", _REF), (bar, live[j], "live", color)):
            h = inner_h * share / top
            out.append(
                f"<rect class='{cls}' x='{x + offset:.1f}' y='{base - h:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                f"fill='{fill}'><title>{_e(labels[j])}: {cls} {share:.1%}</title></rect>"
            )
    step = max(1, int(np.ceil(n / 8)))  # at most ~8 tick labels
    for j in range(0, n, step):
        x = _PAD_L + (j + 0.5) * slot
        text = labels[j] if len(labels[j]) <= 16 else labels[j][:15] + "..."
        out.append(
            f"<text x='{x:.1f}' y='{base + 12}' text-anchor='end' transform='rotate(-30 {x:.1f} {base + 12})'>"
            f"{_e(text)}</text>"
        )
    out.append(f"<line x1='{_PAD_L}' x2='{_W - _PAD_R}' y1='{base}' y2='{base}' stroke='#9aa5b1'/></svg>")
    return "".join(out)


def _stats(entry: FeatureDrift | None) -> str:
    if entry is None:
        return "<div class='note'>not judged</div>"
    test = {"ks": "binned KS", "chi2": "chi-squared"}[entry.test]
    cells = [
        ("test", test),
        ("statistic", _num(entry.statistic)),
        ("p-value", _num(entry.p_value)),
        ("p (adjusted)", _num(entry.p_adjusted)),
        ("PSI", _num(entry.psi)),
        ("JS distance", _num(entry.js)),
        ("rows", str(entry.n)),
    ]
    if entry.missing_fraction:
        cells.append(("missing", f"{entry.missing_fraction:.1%}"))
    if entry.other_fraction:
        cells.append(("unseen categories", f"{entry.other_fraction:.1%}"))
    head = "".join(f"<th>{k}</th>" for k, _ in cells)
    row = "".join(f"<td>{_e(v)}</td>" for _, v in cells)
    note = f"<div class='note'>{_e(entry.note)}</div>" if entry.note else ""
    return f"<table class='stats'><tr>{head}</tr><tr>{row}</tr></table>{note}"


def _rest_row(feature: FeatureProfile, entry: FeatureDrift | None) -> str:
    badge = "drifted" if entry is not None and entry.drifted else ""
    if entry is None:
        return f"<tr><td>{_e(feature.name)}</td><td colspan='5'>not judged</td></tr>"
    return (
        f"<tr><td>{_e(feature.name)}</td><td>{entry.test}</td><td>{_num(entry.p_adjusted)}</td>"
        f"<td>{_num(entry.js)}</td><td>{_num(entry.psi)}</td><td>{badge}</td></tr>"
    )


def _kv(key: str, value: str) -> str:
    return f"<span class='kv'>{key} <b>{value}</b></span>"


def _num(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _short(x: float) -> str:
    return f"{x:.4g}"


def _nice(x: float) -> float:
    """The y axis' top: the next share above x whose quarters are round."""
    for top in (0.02, 0.04, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0):
        if x <= top:
            return top
    return 1.0


def _percent(share: float) -> str:
    pct = round(share * 100, 1)
    return f"{pct:.0f}%" if pct == int(pct) else f"{pct:.1f}%"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
