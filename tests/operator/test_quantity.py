from __future__ import annotations

import pytest
from modeldeploy_operator.quantity import parse_quantity


@pytest.mark.parametrize(
    ("value", "expected"),
    [("500m", 0.5), ("1", 1.0), (2, 2.0), ("1.5", 1.5), ("1Gi", 2.0**30), ("1k", 1000.0), ("1e3", 1000.0),
     ("250u", 0.00025)],
)
def test_parse(value: str | int, expected: float) -> None:
    assert parse_quantity(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["", "abc", "1Xi", "--1"])
def test_reject(value: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(value)
