"""The service fuzzed from its own OpenAPI schema (schemathesis) with the champion loaded: no
generated request, valid or invalid, may get a 5xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.e2e.conftest import Trained

pytestmark = pytest.mark.slow
EXAMPLES = 60  # per operation and mode


def calling(label: str, statuses: Counter) -> Callable:
    """One generated case sent to the app; its status counted; a 5xx fails the test."""

    def call(case) -> None:
        response = case.call()
        statuses[(label, response.status_code)] += 1
        assert response.status_code < 500, (label, case, response.text[:300])

    return call


def test_no_generated_request_gets_a_server_error(trained: Trained) -> None:
    import schemathesis
    from fastapi.testclient import TestClient
    from schemathesis import GenerationMode

    from flows.service import create_app
    from pipeline.settings import Settings

    statuses: Counter[tuple[str, int]] = Counter()
    with pytest.MonkeyPatch.context() as env:
        for key, value in trained.env.items():
            env.setenv(key, value)
        app = create_app(Settings())
        with TestClient(app):  # runs the lifespan: the champion is loaded before any case
            assert app.state.service.holder.current is not None
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            for operation in (result.ok() for result in schema.get_all_operations()):
                label = f"{operation.method.upper()} {operation.path}"
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    fuzz = settings(
                        max_examples=EXAMPLES,
                        deadline=None,
                        database=None,  # no .hypothesis/ folder left in the checkout
                        suppress_health_check=list(HealthCheck),
                    )(given(case=operation.as_strategy(mode))(calling(label, statuses)))
                    try:
                        fuzz()
                    except Unsatisfiable:  # no parameters to make invalid (GET /health)
                        assert mode is GenerationMode.NEGATIVE
    print(sorted(statuses.items()))
    assert sum(statuses.values()) >= 200
    assert {label for label, _ in statuses} >= {"POST /predict", "POST /explain", "GET /health"}
