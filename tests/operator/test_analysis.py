"""Canary analysis from the servers' own metrics text."""

from __future__ import annotations

import pytest
from modeldeploy_api.models import AnalysisSpec
from modeldeploy_operator.analysis import Sample, js_distance, judge, parse_metrics, quantile_ms

METRICS = """\
# TYPE modeldeploy_requests_total counter
modeldeploy_requests_total{model_name="m",model_version="2",endpoint="predict",code="200"} 90.0
modeldeploy_requests_total{model_name="m",model_version="2",endpoint="predict",code="500"} 8.0
modeldeploy_requests_total{model_name="m",model_version="2",endpoint="predict",code="422"} 2.0
modeldeploy_requests_total{model_name="m",model_version="2",endpoint="health",code="200"} 500.0
# TYPE modeldeploy_request_duration_seconds histogram
modeldeploy_request_duration_seconds_bucket{model_name="m",model_version="2",endpoint="predict",le="0.01"} 50.0
modeldeploy_request_duration_seconds_bucket{model_name="m",model_version="2",endpoint="predict",le="0.1"} 90.0
modeldeploy_request_duration_seconds_bucket{model_name="m",model_version="2",endpoint="predict",le="1.0"} 100.0
modeldeploy_request_duration_seconds_bucket{model_name="m",model_version="2",endpoint="predict",le="+Inf"} 100.0
modeldeploy_request_duration_seconds_count{model_name="m",model_version="2",endpoint="predict"} 100.0
modeldeploy_request_duration_seconds_sum{model_name="m",model_version="2",endpoint="predict"} 3.0
# TYPE modeldeploy_predictions_total counter
modeldeploy_predictions_total{model_name="m",model_version="2",label="0"} 60.0
modeldeploy_predictions_total{model_name="m",model_version="2",label="1"} 30.0
"""


def test_parse_counts_prediction_endpoints_only_and_5xx_as_errors() -> None:
    s = parse_metrics(METRICS)
    assert s.requests == 100 and s.errors == 8
    assert s.buckets["+Inf"] == 100 and s.buckets["0.01"] == 50
    assert s.predictions == {"0": 60, "1": 30}


def test_quantile_interpolates_like_prometheus() -> None:
    s = parse_metrics(METRICS)
    # rank 99 of 100 lies in (0.1, 1.0] holding 10 requests: 0.1 + 0.9 * 9/10
    assert quantile_ms(s.buckets, 0.99) == pytest.approx(910.0)
    assert quantile_ms(s.buckets, 0.5) == pytest.approx(10.0)
    assert quantile_ms({}, 0.99) is None


def test_deltas_and_sums_never_go_negative() -> None:
    a = parse_metrics(METRICS)
    restarted = Sample(requests=5, errors=0, buckets={"+Inf": 5}, predictions={"0": 5})
    d = restarted - a
    assert d.requests == 0 and d.buckets["+Inf"] == 0
    total = a + restarted
    assert total.requests == 105 and total.predictions["0"] == 65
    assert Sample.from_dict(total.to_dict()) == total


def test_js_distance() -> None:
    assert js_distance({"a": 1, "b": 1}, {"a": 5, "b": 5}) == pytest.approx(0.0)
    assert js_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)
    assert js_distance({}, {"a": 1}) is None


def test_judge_fails_on_error_rate_and_names_the_metric() -> None:
    spec = AnalysisSpec(max_error_rate=0.05, min_requests=20)
    v = judge(spec, parse_metrics(METRICS), None)
    assert v.outcome == "Failed" and v.failed_checks == ("errorRate 0.080 > 0.05",)
    assert v.to_status("t")["errorRate"] == 0.08


def test_judge_latency_and_prediction_shift() -> None:
    canary = parse_metrics(METRICS)
    canary.errors = 0
    slow = judge(AnalysisSpec(max_p99_latency_ms=500), canary, None)
    assert slow.outcome == "Failed" and "p99LatencyMs" in slow.message
    stable = Sample(requests=100, predictions={"0": 10, "1": 90})
    shifted = judge(AnalysisSpec(max_prediction_shift=0.2), canary, stable)
    assert shifted.outcome == "Failed" and "predictionShift" in shifted.message
    same = judge(AnalysisSpec(max_prediction_shift=0.2), canary, Sample(predictions={"0": 600, "1": 300}))
    assert same.outcome == "Passed"


def test_judge_is_inconclusive_without_enough_traffic_but_drift_still_fails() -> None:
    few = Sample(requests=3, errors=3)
    assert judge(AnalysisSpec(min_requests=20), few, None).outcome == "Inconclusive"
    drifting = Sample(requests=3, drifted=True)
    assert judge(AnalysisSpec(min_requests=20, fail_on_drift=True), drifting, None).outcome == "Failed"
