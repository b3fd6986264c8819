"""Schemathesis against the server's own OpenAPI: no 5xx, no response that breaks the schema."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_server.app import create_app

from tests.fixtures.models import SavedModel

from .conftest import serve_http, settings_for, wait_ready

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(iris_model: SavedModel, mode: GenerationMode) -> None:
    """Every operation, a bounded number of generated requests each, all default checks.

    One exception: a schema-valid V2 infer request may still be refused, since JSON Schema
    cannot say that `data` must hold prod(`shape`) values; everything else must be accepted.
    """
    app = create_app(settings_for(iris_model, max_instances=50, max_body_bytes=64 * 1024))
    with serve_http(app) as base_url:
        wait_ready(base_url)
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        # Too many rows (over maxItems) or bytes is refused with 413, which is a rejection too.
        rejection = schema.config.checks.negative_data_rejection
        rejection.expected_statuses = [*rejection.expected_statuses, "413"]
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 18
        for operation in operations:
            excluded = [positive_data_acceptance] if operation.path.endswith("/infer") else []
            _fuzz(operation, mode, excluded)


def _fuzz(operation: Any, mode: GenerationMode, excluded: list[Any]) -> None:
    @hypothesis.settings(
        max_examples=10,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        case.call_and_validate(excluded_checks=excluded)

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        # Nothing to make invalid: no body, and any string is a valid path parameter.
        assert mode is GenerationMode.NEGATIVE
        assert not operation.body
    except Exception as exc:
        exc.add_note(f"operation: {operation.label} ({mode.value})")
        raise
