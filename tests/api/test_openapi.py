"""The OpenAPI document is complete enough for a generated client: ids, errors and response models."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from countersign.settings import Settings

PUBLIC = {"/v1/healthz", "/v1/readyz"}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    schema = create_app(Settings()).openapi()
    return [
        (method.upper(), path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_operation_ids_are_unique_and_name_the_route() -> None:
    ids = [op["operationId"] for _, _, op in _operations()]
    assert len(ids) == len(set(ids)), ids
    assert all(i.isidentifier() and "_v1_" not in i for i in ids), ids
    assert {"create_run", "cancel_run", "stream_run_events", "decide_approval", "create_webhook"} <= set(ids)


def test_every_route_documents_its_errors_and_its_response() -> None:
    schema = create_app(Settings()).openapi()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for method, path, op in _operations():
        responses = op["responses"]
        if path not in PUBLIC:
            assert {"401", "403"} <= set(responses), (method, path)
            assert op.get("security") == [{"bearer": []}], (method, path)
            for code in ("401", "403"):
                problem = responses[code]["content"]["application/problem+json"]["schema"]
                assert problem == {"$ref": "#/components/schemas/Problem"}, (method, path, code)
        if method == "POST":
            assert {"422", "413"} <= set(responses), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        ok = [c for c in responses if c.startswith("2")]
        assert len(ok) == 1, (method, path, ok)
        if ok[0] != "204":
            content = responses[ok[0]]["content"]
            assert any(c.get("schema") for c in content.values()), (method, path, "no response model")
    run_post = dict((m, op) for m, p, op in _operations() if p == "/v1/runs")["POST"]
    assert {"409", "429"} <= set(run_post["responses"])
    assert "Retry-After" in run_post["responses"]["429"]["headers"]
