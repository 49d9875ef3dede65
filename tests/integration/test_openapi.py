"""The OpenAPI document a live daemon serves is true: schemathesis fuzzes every operation
of ``/api/openapi.json`` (bounded, well under 90 s) and finds no server error and no
response that the document does not describe (status code, content type, headers, body).

Also checked: invalid data is refused (command arguments are validated strictly, as the
schema states them) and an undeclared method gets a 405 with ``Allow``.
``/api/events`` is left out: a server-sent event stream never ends, so there is no
response body to validate.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# WHIP and WHEP bodies are SDP text: send generated strings as they are.
schemathesis.serializer.alias("application/sdp", "text/plain")

CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
    st_checks.negative_data_rejection,
    st_checks.unsupported_method,
]


MAX_EXAMPLES = 25


def test_live_daemon_matches_its_openapi_document(start_daemon: Callable[..., Any]) -> None:
    from hypothesis import given

    daemon = start_daemon()  # the packaged default model on a free port
    schema = schemathesis.openapi.from_url(daemon.url.rstrip("/") + "/api/openapi.json")
    tested: list[str] = []
    failures: list[str] = []
    calls = 0
    operations = [r.ok() for r in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):
        if operation.path == "/api/events":
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(checks=CHECKS, timeout=15)

        try:
            check()
        except Unsatisfiable:
            # Nothing to make invalid (no parameters, or a path id any string satisfies).
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.path
        except Exception as exc:  # one operation's failure must not hide the others'
            failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
        tested.append(f"{operation.method.upper()} {operation.path}")
    # Every operation but the event stream and the document itself (schemathesis leaves out
    # the operation that serves the schema it loaded; the test below covers that one).
    assert len(set(tested)) >= 11, ", ".join(sorted(set(tested)))
    assert calls > 10 * len(set(tested)), calls
    assert not failures, "\n\n".join(failures)


def test_served_document_is_the_generated_one(start_daemon: Callable[..., Any]) -> None:
    """``/api/openapi.json`` is valid OpenAPI 3.1 and is what ``openapi_document`` makes of
    the daemon's ``/api/schema`` (the docs' copy is generated the same way)."""
    import json
    import urllib.request

    from reactor.workers.http import openapi_document

    daemon = start_daemon()
    base = daemon.url.rstrip("/")
    with urllib.request.urlopen(base + "/api/openapi.json", timeout=10) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
        served = json.load(resp)
    with urllib.request.urlopen(base + "/api/schema", timeout=10) as resp:
        model_schema = json.load(resp)
    assert served == openapi_document(model_schema)
    loaded = schemathesis.openapi.from_dict(served)
    assert served["openapi"] == "3.1.0" and len(list(loaded.get_all_operations())) == 17
