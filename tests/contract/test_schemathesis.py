"""Schemathesis against a real uvicorn server, one parametrized test per operation of every spec.

Every default check runs (no 5xx, status codes, content types, headers and bodies as the spec
declares, invalid input rejected). 501 answers are allowed only for operations that have no
handler yet; `test_report_unimplemented` prints that list so it can only shrink.
"""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from generated.routes import OPERATIONS
from ggstack.docs import spec_document
from tests.server import Server

MAX_EXAMPLES = 12


@pytest.fixture(scope="session")
def contract_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    server = Server(tmp_path_factory.mktemp("contract")).start()
    yield server
    server.stop()
    assert not server.mismatches(), "\n".join(server.mismatches())


def spec_for(name: str, server: Server) -> schemathesis.schemas.BaseSchema:
    document = copy.deepcopy(spec_document(name))
    base = httpx.URL(document.get("servers", [{"url": "/"}])[0]["url"]).path.rstrip("/")
    document["servers"] = [{"url": server.url + base}]
    return schemathesis.openapi.from_dict(document)


@pytest.fixture(scope="session")
def llama_stack_spec(contract_server: Server):
    return spec_for("llama-stack-deprecated", contract_server)


@pytest.fixture(scope="session")
def llama_stack_inference_spec(contract_server: Server):
    return spec_for("llama-stack-inference", contract_server)


@pytest.fixture(scope="session")
def dell_spec(contract_server: Server):
    return spec_for("dell-pro-ai-studio", contract_server)


@pytest.fixture(scope="session")
def ggstack_spec(contract_server: Server):
    return spec_for("ggstack", contract_server)


def unimplemented(server: Server) -> set[str]:
    return {op.operation_id for op in OPERATIONS} - implemented_ids(server)


def implemented_ids(server: Server) -> set[str]:
    routes = httpx.get(f"{server.url}/v1/inspect/routes").json()["data"]
    served = {(r["method"], r["route"]) for r in routes}
    return {op.operation_id for op in OPERATIONS if (op.method, op.paths[0]) in served}


def run_case(case, server: Server) -> None:
    response = case.call_and_validate()
    if response.status_code == 501:
        assert case.operation.definition.raw.get("operationId") in unimplemented(server), \
            f"{case.operation.label} answered 501 but has a handler"


fuzz = settings(max_examples=MAX_EXAMPLES, deadline=None,
                suppress_health_check=list(HealthCheck))

llama_stack = schemathesis.pytest.from_fixture("llama_stack_spec")
llama_stack_inference = schemathesis.pytest.from_fixture("llama_stack_inference_spec")
dell = schemathesis.pytest.from_fixture("dell_spec")
ggstack = schemathesis.pytest.from_fixture("ggstack_spec")


@llama_stack.parametrize()
@fuzz
def test_llama_stack(case, contract_server: Server) -> None:
    run_case(case, contract_server)


@llama_stack_inference.parametrize()
@fuzz
def test_llama_stack_inference(case, contract_server: Server) -> None:
    run_case(case, contract_server)


@dell.parametrize()
@fuzz
def test_dell(case, contract_server: Server) -> None:
    run_case(case, contract_server)


@ggstack.parametrize()
@fuzz
def test_ggstack(case, contract_server: Server) -> None:
    run_case(case, contract_server)


def test_report_unimplemented(contract_server: Server) -> None:
    """Not a pass/fail on the count: it prints the gap list, and checks each one really answers 501."""
    missing = sorted(unimplemented(contract_server))
    by_id = {op.operation_id: op for op in OPERATIONS}
    for operation_id in missing:
        op = by_id[operation_id]
        if op.body is not None or any(p.required for p in op.params):
            continue
        answer = httpx.request(op.method, contract_server.url + op.paths[0])
        assert answer.status_code == 501, f"{operation_id} is listed as missing but answered {answer.status_code}"
    print(f"\n{len(missing)} operations answer 501 (not implemented): {', '.join(missing)}")
    Path(contract_server.data_dir / "unimplemented.txt").write_text("\n".join(missing))
