"""`ggstack contract URL`: Schemathesis against a second ggstack instance and a deliberately broken app.

Runs stay small (a few operations, 3 examples each); what is checked is the report: the outcome per
operation, the replay and schema path of each failure, the JUnit/HTML files and the exit code.
"""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from ggstack.cli import main
from ggstack.core.access import key_digest
from tests.server import Server, free_port, served

CHEAP = "^/v1/(version|health|inspect/routes)$"
KEY = "contract-test-key-0123456789"


@pytest.fixture(scope="module")
def ggstack_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    yield from served(tmp_path_factory.mktemp("contract-target"))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    config = {"api_keys": [{"name": "ci", "sha256": key_digest(KEY)}]}
    yield from served(tmp_path_factory.mktemp("contract-keyed"), config=config)


@pytest.fixture(scope="module")
def broken_url() -> str:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "tests.fixtures.broken_app:app",
                                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def contract(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = main(["contract", *args, "--examples", "3", "--quiet"])
    return code, capsys.readouterr().out


def outcomes(junit: Path) -> dict[str, str]:
    """testcase name -> passed / failed / skipped, from the JUnit file."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case]
        found[case.get("name")] = "failed" if "failure" in kinds else "skipped" if "skipped" in kinds else "passed"
    return found


def test_ggstack_passes_its_own_contract(ggstack_server: Server, capsys, tmp_path: Path) -> None:
    code, out = contract(capsys, ggstack_server.url, "--spec", "llama-stack-stable", "--include", CHEAP,
                         "--report", str(tmp_path / "junit.xml"), "--html", str(tmp_path / "report.html"))
    assert code == 0, out
    assert outcomes(tmp_path / "junit.xml") == {"GET /v1/health (health)": "passed",
                                                "GET /v1/inspect/routes (list_routes)": "passed",
                                                "GET /v1/version (version)": "passed"}
    assert "3 passed, 0 failed" in out
    assert "GET /v1/inspect/routes" in (tmp_path / "report.html").read_text()


def test_broken_server_fails_with_replay_and_schema_path(broken_url: str, capsys, tmp_path: Path) -> None:
    code, out = contract(capsys, broken_url, "--spec", "llama-stack-stable",
                         "--include", "^/v1/(version|health|models)$", "--report", str(tmp_path / "junit.xml"),
                         "--html", str(tmp_path / "report.html"))
    assert code == 1, out
    assert outcomes(tmp_path / "junit.xml") == {"GET /v1/health (health)": "passed",
                                                "GET /v1/version (version)": "failed",
                                                "GET /v1/models (list_models)": "skipped",
                                                "POST /v1/models (register_model)": "skipped"}
    assert "schema: #/paths/~1v1~1version/get/responses/200/content/application~1json/schema/required" in out
    assert "schema: #/paths/~1v1~1version/get/responses/200/content/application~1json/schema/additionalProperties" \
        in out
    replay = next(line for line in out.splitlines() if "replay: curl" in line)
    assert replay.strip() == f"replay: curl -X GET {broken_url}/v1/version"
    html = (tmp_path / "report.html").read_text()
    assert "not implemented" in html and "&#39;release&#39; was unexpected" in html


def test_api_key_option_authenticates(keyed_server: Server, capsys) -> None:
    code, out = contract(capsys, keyed_server.url, "--spec", "llama-stack-stable", "--include", "^/v1/version$")
    assert code == 1, out
    assert "answered 401" in out
    code, out = contract(capsys, keyed_server.url, "--spec", "llama-stack-stable", "--include", "^/v1/version$",
                         "--api-key", KEY)
    assert code == 0, out
    assert "1 passed" in out


def test_replays_read_credentials_from_the_environment(broken_url: str, capsys) -> None:
    code, out = contract(capsys, broken_url, "--spec", "llama-stack-stable", "--include", "^/v1/version$",
                         "--api-key", KEY, "-H", "X-Token: secret-token")
    assert code == 1, out
    assert KEY not in out and "secret-token" not in out
    assert out.splitlines()[0].startswith("Replays read the credentials passed from the environment: export ")
    replay = next(line for line in out.splitlines() if "replay: curl" in line).split("replay: ", 1)[1]
    assert '-H "Authorization: Bearer $GGSTACK_API_KEY"' in replay and '-H "X-Token: $GGSTACK_X_TOKEN"' in replay
    pasted = subprocess.run(["bash", "-c", replay.replace("curl ", "curl -sS -w ' %{http_code}' ", 1)],
                            env={"PATH": "/usr/bin:/bin", "GGSTACK_API_KEY": KEY, "GGSTACK_X_TOKEN": "t"},
                            capture_output=True, text=True, check=True)
    assert pasted.stdout == '{"release":"0.2.23"} 200'


def test_dell_document_is_tested_under_its_server_path(ggstack_server: Server, capsys) -> None:
    code, out = contract(capsys, ggstack_server.url, "--spec", "dell-pro-ai-studio", "--include", "^/openai/models$")
    assert code == 0, out
    assert "ok   dell-pro-ai-studio" in out and "GET /openai/models" in out


def test_unknown_spec_is_a_usage_error(capsys) -> None:
    assert main(["contract", "http://127.0.0.1:9", "--spec", "no-such-spec"]) == 2
    assert "neither a file nor one of" in capsys.readouterr().err


def test_unknown_ids_answered_400_pass_by_default(ggstack_server: Server, capsys) -> None:
    """ggstack answers an unknown vector store / response id with the house rule's 400 "Invalid value"
    where Schemathesis expects 404; on Llama Stack id paths that declare 400, that counts as not found."""
    code, out = contract(capsys, ggstack_server.url, "--spec", "llama-stack-stable",
                         "--include", "^/v1/(vector_stores/\\{vector_store_id\\}|responses/\\{response_id\\})$")
    assert code == 0, out
    assert "400x" in out  # unknown ids were asked for and answered 400


def test_unknown_list_cursors_answered_400_pass_by_default(ggstack_server: Server, capsys) -> None:
    """A list's `after`/`before` naming no item is the same house-rule 400 "Invalid value"."""
    code, out = contract(capsys, ggstack_server.url, "--spec", "llama-stack-stable",
                         "--include", "^(list_chat_completions|list_openai_responses|openai_list_files)$")
    assert code == 0, out
    assert "400x" in out  # unknown cursors were asked for and answered 400


def test_400_on_valid_data_without_an_id_still_fails(broken_url: str, capsys) -> None:
    code, out = contract(capsys, broken_url, "--spec", "llama-stack-stable", "--include", "^/v1/vector_stores$")
    assert code == 1, out
    assert "positive_data_acceptance_with_house_rules, answered 400" in out


def test_unknown_ids_in_bodies_answered_400_pass_by_default(ggstack_server: Server, capsys) -> None:
    """A `vector_db_id`/`shield_id`/`model` naming nothing is 400 "Invalid value: ... not found" in
    a body as in a path; these operations take no path id, so the body-id house rule alone passes them."""
    code, out = contract(capsys, ggstack_server.url, "--spec", "llama-stack-stable",
                         "--include", "^/v1/(vector-io/query|safety/run-shield|moderations)$")
    assert code == 0, out
    assert "3 passed, 0 failed" in out and "400x" in out


def test_400_quoting_a_body_id_without_saying_it_is_unknown_still_fails(broken_url: str, capsys) -> None:
    code, out = contract(capsys, broken_url, "--spec", "llama-stack-stable", "--include", "^/v1/vector-io/query$")
    assert code == 1, out
    assert "positive_data_acceptance_with_house_rules, answered 400" in out


def test_stateful_sequences_pass_with_default_checks(ggstack_server: Server, capsys) -> None:
    """Prompts link create -> get/update/delete; unknown ids along the way answer 400 (see above)."""
    code, out = contract(capsys, ggstack_server.url, "--spec", "llama-stack-stable", "--include", "^/v1/prompts",
                         "--stateful")
    assert code == 0, out
    stateful = next(line for line in out.splitlines() if "Stateful tests" in line)
    assert stateful.startswith("ok ") and "(sequences)" in stateful
    assert int(stateful.split("[", 1)[1].split()[0]) > 0  # requests sent in sequences
