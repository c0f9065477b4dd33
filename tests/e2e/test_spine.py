"""The spine through a real server: routing, error shapes, 501 gaps, docs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from generated.routes import OPERATIONS
from tests.server import Server, served


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    yield from served(tmp_path_factory.mktemp("spine"))


def test_unknown_path_is_404_in_the_llama_stack_error_shape(server: Server) -> None:
    answer = httpx.get(f"{server.url}/v1/no/such/thing")
    assert answer.status_code == 404
    assert answer.json() == {"status": 404, "title": "Not Found", "detail": "No route for GET /v1/no/such/thing"}


def test_unknown_dell_path_is_404_in_the_dell_error_shape(server: Server) -> None:
    answer = httpx.get(f"{server.url}/v1/openai/images/nothing")
    assert answer.status_code == 404
    assert set(answer.json()) <= {"message", "type", "param", "code"} and "message" in answer.json()


def test_wrong_method_is_405_listing_every_method_of_the_path(server: Server) -> None:
    answer = httpx.put(f"{server.url}/v1/openai/v1/files")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD, POST"


def test_operations_without_handlers_answer_501_naming_the_operation(server: Server) -> None:
    routes = httpx.get(f"{server.url}/v1/inspect/routes").json()["data"]
    served = {(r["method"], r["route"]) for r in routes}
    missing = [op for op in OPERATIONS if (op.method, op.paths[0]) not in served
               and op.body is None and not any(p.required for p in op.params) and "{" not in op.paths[0]]
    for op in missing[:5]:
        answer = httpx.request(op.method, server.url + op.paths[0])
        assert answer.status_code == 501, op.operation_id
        assert f"{op.operation_id} is not implemented" in answer.text


def test_invalid_body_is_400_naming_the_field(server: Server) -> None:
    answer = httpx.post(f"{server.url}/v1/models", json={"model_type": "llm"})
    assert answer.status_code == 400
    assert "model_id" in answer.json()["detail"]


def test_body_that_is_not_json_is_400(server: Server) -> None:
    answer = httpx.post(f"{server.url}/v1/models", content=b"{nope", headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["detail"]


def test_llama_stack_client_version_header_never_gets_426(server: Server) -> None:
    answer = httpx.get(f"{server.url}/v1/health", headers={"X-LlamaStack-Client-Version": "0.2.23"})
    assert answer.status_code == 200 and answer.json() == {"status": "OK"}


def test_docs_page_and_its_assets_are_served_locally(server: Server) -> None:
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "https://" not in page.text
    asset = httpx.get(f"{server.url}/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_openapi_json_and_yaml_hold_every_served_path(server: Server) -> None:
    merged = httpx.get(f"{server.url}/openapi.json").json()
    as_yaml = yaml.safe_load(httpx.get(f"{server.url}/openapi.yaml").text)
    assert merged == as_yaml
    for op in OPERATIONS:
        for path in op.paths:
            assert op.method.lower() in merged["paths"][path], path


def test_version_and_providers(server: Server, tmp_path: Path) -> None:
    assert httpx.get(f"{server.url}/v1/version").json()["version"]
    providers = httpx.get(f"{server.url}/v1/providers").json()["data"]
    types = {p["provider_type"] for p in providers}
    assert {"inline::llama-cpp", "inline::chromadb"} <= types
    one = httpx.get(f"{server.url}/v1/providers/llama-cpp").json()
    assert one["provider_type"] == "inline::llama-cpp"
    assert httpx.get(f"{server.url}/v1/providers/nope").status_code == 404


def test_one_spec_by_name_and_unknown_name_is_404(server: Server) -> None:
    assert httpx.get(f"{server.url}/openapi/llama-stack-stable.json").json()["info"]["title"]
    answer = httpx.get(f"{server.url}/openapi/nope.json")
    assert answer.status_code == 404 and set(answer.json()) == {"status", "title", "detail"}
