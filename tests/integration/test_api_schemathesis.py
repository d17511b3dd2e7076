"""Property-based tests generated from the app's own OpenAPI document (schemathesis): no 5xx,
and every response conforms to the documented status codes, content types and schemas, on
SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from nuru_yield.config import Settings
from nuru_yield.serving.app import create_app
from tests.integration import test_api_support as support
from tests.integration.test_api_support import API_KEY, REGISTRY, PredictionsDb, auth

known_db = support.known_db


@pytest.fixture
def api_schema(known_db: PredictionsDb, nuru_home: Path):
    app = create_app(
        Settings(
            nuru_home=nuru_home,
            predictions_db_url=known_db.url,
            api_key=API_KEY,
            api_rate_limit_per_minute=0,
        ),
        registry_reader=lambda: REGISTRY,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_api_conforms_to_its_openapi(api_schema: schemathesis.BaseSchema) -> None:
    # Hypothesis driven directly (schemathesis.pytest's fixture loader does not support this
    # pytest): one property per operation.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 9

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=auth())

        conforms()
