"""Run Schemathesis's engine over one or more OpenAPI documents and fold its events into results.

The engine reports per phase (examples, coverage, fuzzing, stateful) and per scenario; a person
wants one row per operation. So every finished scenario's recorder is merged into the row of its
operation: which statuses the server answered and which checks failed, each failure kept once
(by check and title) with its curl replay and the JSON pointer of the schema part it broke.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ggstack.contract.runtime_rules import Request, runtime_refusal
from ggstack.http.docs import DocumentError, read_document

Outcome = Literal["passed", "failed", "not implemented", "errored"]

#: Phases run unless told otherwise; `stateful` follows the documents' links when asked for.
PHASES = ("examples", "coverage", "fuzzing")
#: A failure's message is cut to this many lines in the report (the schema dump follows them).
MESSAGE_LINES = 4
#: Error body properties that mark a Llama Stack document (its `Error` schema, RFC 7807-like).
LLAMA_STACK_ERROR = {"status", "title", "detail"}


class ContractError(ValueError):
    """The run cannot start: an unknown spec name, an unreadable file, a bad regex."""


@dataclass
class Document:
    """A document to test and where its operations live on the target."""

    name: str
    body: dict[str, Any]
    base_path: str

    def operation_ids(self) -> dict[str, str]:
        """`"GET /v1/models"` (Schemathesis's label) -> operationId."""
        labels = {}
        for path, item in self.body.get("paths", {}).items():
            for method, op in item.items():
                if isinstance(op, dict) and "operationId" in op:
                    labels[f"{method.upper()} {path}"] = op["operationId"]
        return labels


@dataclass
class Failure:
    check: str
    title: str
    message: str
    curl: str
    status: int | None
    schema_path: str | None
    count: int = 1


@dataclass
class OperationResult:
    spec: str
    label: str
    operation_id: str
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    #: the answers to requests generated to fit the schema (Schemathesis' positive mode)
    valid_statuses: Counter[int] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        if self.errors and not self.statuses:
            return "errored"
        if self.not_implemented:
            return "not implemented"
        return "failed" if self.failures or self.errors else "passed"

    @property
    def not_implemented(self) -> bool:
        """Every answer was 501, or 404/405 on a path with no parameters (so no id could be unknown),
        or every valid request was answered 501 and every other one refused with a 4xx (a server
        that checks requests before it finds the operation missing)."""
        answers = set(self.statuses)
        if not answers:
            return False
        if answers == {501}:
            return True
        if set(self.valid_statuses) == {501} and all(400 <= code < 500 for code in answers - {501}):
            return True
        return "{" not in self.label and answers <= {404, 405, 501}

    def add_failure(self, failure: Failure) -> None:
        for known in self.failures:
            if (known.check, known.title, known.schema_path) == (failure.check, failure.title, failure.schema_path):
                known.count += 1
                return
        self.failures.append(failure)


@dataclass
class ContractRun:
    url: str
    #: Environment variables the replays read instead of the secrets passed (see `replay_placeholders`).
    replay_env: list[str] = field(default_factory=list)
    results: list[OperationResult] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return not self.fatal and not any(r.outcome in ("failed", "errored") for r in self.results)


@dataclass
class Options:
    url: str
    specs: list[str]
    include: str | None = None
    examples: int = 10
    stateful: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    #: Header name -> what replays show for its value (`replay_placeholders`).
    placeholders: dict[str, str] = field(default_factory=dict)
    exclude_checks: list[str] = field(default_factory=list)
    seed: int | None = 0
    request_timeout: float = 60.0


def load_document(ref: str) -> Document:
    """A document ggstack serves (by name) or a file, with the path its server URL puts operations under."""
    try:
        name, body = read_document(ref)
    except DocumentError as exc:
        raise ContractError(f"--spec {exc}") from None
    servers = body.get("servers") or [{"url": "/"}]
    base_path = httpx.URL(servers[0].get("url", "/")).path.rstrip("/")
    return Document(name=name, body=body, base_path=base_path)


def schemathesis_config(options: Options, document: Document) -> Any:
    from schemathesis.config import SchemathesisConfig

    phases = {name: {"enabled": name in PHASES} for name in ("examples", "coverage", "fuzzing")}
    phases["stateful"] = {"enabled": options.stateful}
    checks = {name: {"enabled": False} for name in options.exclude_checks}
    if "positive_data_acceptance" not in options.exclude_checks:
        # The house rules replace the stock check (see `accepts_unknown_body_ids`, runtime_rules).
        register_house_rules_check()
        checks["positive_data_acceptance"] = {"enabled": False}
        checks[HOUSE_RULES_CHECK] = {"enabled": True}
    return SchemathesisConfig.from_dict({
        "operations": unknown_id_rules(document),
        "base-url": options.url.rstrip("/") + document.base_path,
        "headers": options.headers,
        "generation": {"max-examples": options.examples},
        "phases": phases,
        "checks": checks,
        "request-timeout": options.request_timeout,
        **({"seed": options.seed} if options.seed is not None else {}),
    })


def unknown_id_rules(document: Document) -> list[dict[str, Any]]:
    """Per-operation settings: 400 counts as "not found" where the Llama Stack server answers so.

    The reference server answers an unknown vector store, response or chat completion id with 400
    "Invalid value: ..." where Schemathesis expects 404 for a well-formed request naming an id that
    does not exist, and so it answers a list's `after`/`before` cursor naming no item. So on a
    Llama Stack document (its `Error` schema is {status, title, detail}), an operation whose path
    or cursor takes an id and whose responses declare 400 also accepts 400 for valid data.
    Nowhere else: a 400 on valid data to an operation without an id still fails the check.
    """
    # A per-operation list replaces Schemathesis' default rather than adding to it.
    from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES as accepted

    if not is_llama_stack(document):
        return []
    rules = []
    for path, item in document.body.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "400" not in op.get("responses", {}):
                continue
            if "{" in path or CURSORS & query_parameters(op):
                # One key: Schemathesis ORs the filters of an entry (path OR method would match too much).
                rules.append({"include-name": f"{method.upper()} {path}", "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*accepted, "400"]}}})
    return rules


def is_llama_stack(document: Document) -> bool:
    return has_llama_stack_errors(document.body)


def has_llama_stack_errors(body: dict[str, Any]) -> bool:
    error = body.get("components", {}).get("schemas", {}).get("Error", {})
    return LLAMA_STACK_ERROR <= set(error.get("properties", {}))


#: The check that stands in for `positive_data_acceptance`: the stock check, after the house rules.
HOUSE_RULES_CHECK = "positive_data_acceptance_with_house_rules"
#: Body fields that name a stored object (or a provider): `vector_db_id`, `shield_id`,
#: `provider_model_id`, `vector_db_ids`, `model`; and maps keyed by such names.
ID_FIELD = re.compile(r"(^|_)(id|ids|model)$")
ID_MAPS = {"scoring_functions"}
#: How the server says an id names nothing, after "Invalid value: " (the reference server's words
#: "not found", and ggstack's for shields, guard models, spans, providers and model files).
NAMES_NOTHING = re.compile(r"not found|\bno [\w ]+ named\b|was never started|is not one of|"
                           r"is not (a|an) [\w ]+ provider|is not in the server's model director")


def body_ids(value: Any, key: str = "") -> set[str]:
    """Every string an id field of a JSON body holds, at any depth (map keys of ID_MAPS too)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if key in ID_MAPS:
            found.update(str(k) for k in value)
        for name, inner in value.items():
            found |= body_ids(inner, str(name))
    elif isinstance(value, list):
        for item in value:
            found |= body_ids(item, key)
    elif isinstance(value, str) and ID_FIELD.search(key):
        found.add(value)
    return found


def accepts_unknown_body_ids(body: Any, status: int, detail: str) -> bool:
    """A 400 "Invalid value: ..." that quotes an id of the body and says it names nothing.

    The reference server answers an id in a body naming no stored object (a `vector_db_id`,
    `shield_id`, a scoring function) as it answers one in a path: 400 "Invalid value: ... not
    found". Schemathesis cannot know which ids exist, so such an answer counts as "not found";
    a 400 to a valid request that does not name one of its own ids as unknown still fails.
    """
    if status != 400 or not detail.startswith("Invalid value"):
        return False
    return bool(NAMES_NOTHING.search(detail)) and any(form in detail for value in body_ids(body)
                                                      for form in quoted_forms(value))


def quoted_forms(value: str) -> set[str]:
    """How a message may quote `value`: as is, or as Python's repr (which escapes what is not
    printable), of the string as sent or as the server decoded it (JSON joins surrogate pairs)."""
    joined = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return {f"'{value}'", repr(value), repr(joined)}


def register_house_rules_check() -> None:
    """Register (once) the check that applies the house rules, then the stock one.

    A 400 to valid data passes when it says an id of the body names nothing (Llama Stack
    documents: `accepts_unknown_body_ids`) or when one of `runtime_rules.RULES` matches it and
    the request; the stock `positive_data_acceptance` judges every other answer.
    """
    import schemathesis
    from schemathesis.checks import CHECKS
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    if HOUSE_RULES_CHECK in CHECKS.get_all_names():
        return

    def check(ctx: Any, response: Any, case: Any) -> bool | None:
        if ctx.config.positive_data_acceptance.enabled:
            return None  # a run that kept the stock check (not one of ours) judges with it alone
        message = error_message(response)
        if (has_llama_stack_errors(case.operation.schema.raw_schema)
                and accepts_unknown_body_ids(case.body, response.status_code, message)):
            return None
        request = Request(body=case.body, query=dict(case.query or {}))
        if runtime_refusal(request, response.status_code, message) is not None:
            return None
        return positive_data_acceptance(ctx, response, case)

    check.__name__ = HOUSE_RULES_CHECK
    schemathesis.check(check)


def error_message(response: Any) -> str:
    """A 400's message: `detail` in the Llama Stack shape, `error.message` in OpenAI's,
    `message` in Dell's; "" for any other answer."""
    if response.status_code != 400:
        return ""
    try:
        answer = response.json()
    except ValueError:
        return ""
    if not isinstance(answer, dict):
        return ""
    error = answer.get("error")
    message = answer.get("detail", error.get("message") if isinstance(error, dict) else answer.get("message"))
    return message if isinstance(message, str) else ""


#: Query parameters that name an item of the list being paged.
CURSORS = {"after", "before"}


def query_parameters(op: dict[str, Any]) -> set[str]:
    return {str(p["name"]) for p in op.get("parameters", [])
            if isinstance(p, dict) and p.get("in") == "query" and "name" in p}


def replay_placeholders(headers: dict[str, str], api_key: bool) -> dict[str, str]:
    """Header name -> a shell variable reference that replays carry instead of the value.

    Schemathesis masks credentials in its curl samples as `[Filtered]`, which a person cannot paste
    and run; a variable keeps the secret out of reports and still runs once it is exported. The key
    from --api-key reads `$GGSTACK_API_KEY`; any other header `$GGSTACK_<NAME>`.
    """
    found = {}
    for name in headers:
        if api_key and name.lower() == "authorization":
            found[name] = "Bearer $GGSTACK_API_KEY"
        else:
            found[name] = "$GGSTACK_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
    return found


def unmask(curl: str, placeholders: dict[str, str]) -> str:
    """Swap `-H 'Name: [Filtered]'` for `-H "Name: $VAR"` (double quotes, so the shell expands it)."""
    for name, value in placeholders.items():
        curl = curl.replace(f"-H '{name}: [Filtered]'", f'-H "{name}: {value}"')
    return curl


def run_contract(options: Options, progress: Any = None) -> ContractRun:
    """Test every document in turn; `progress(text)` hears one line per finished operation phase."""
    if options.include is not None:
        try:
            re.compile(options.include)
        except re.error as exc:
            raise ContractError(f"--include {options.include!r}: {exc}") from None
    documents = [load_document(ref) for ref in options.specs]
    run = ContractRun(url=options.url)
    for document in documents:
        run_document(options, document, run, progress or (lambda text: None))
    replays = "\n".join(f.curl for r in run.results for f in r.failures)
    run.replay_env = [var for value in options.placeholders.values()
                      for var in re.findall(r"\$(\w+)", value) if f"${var}" in replays]
    return run


def run_document(options: Options, document: Document, run: ContractRun, progress: Any) -> None:
    import schemathesis
    from schemathesis.engine import events, from_schema
    from schemathesis.schemas import BaseSchema

    schema: BaseSchema = schemathesis.openapi.from_dict(document.body, config=schemathesis_config(options, document))
    if options.include is not None:
        pattern = re.compile(options.include)
        # An exclude, not an include: the per-operation settings already add an include that matches all.
        schema = schema.exclude(lambda ctx: not (pattern.search(ctx.operation.path)
                                                 or pattern.search(operation_id_of(ctx.operation))))
    labels = document.operation_ids()
    rows: dict[str, OperationResult] = {}

    def row(label: str) -> OperationResult:
        if label not in rows:
            rows[label] = OperationResult(spec=document.name, label=label,
                                          operation_id=labels.get(label, "(sequences)"))
        return rows[label]

    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.skip_reason is None:
            merge_scenario(row(event.recorder.label), event.recorder, document, options.placeholders)
            progress(f"{document.name} {event.phase.value:<9} {event.recorder.label}: {event.status.value}")
        elif isinstance(event, events.NonFatalError):
            row(event.label).errors.append(event.info.message)
        elif isinstance(event, events.FatalError):
            run.fatal.append(f"{document.name}: {event.exception}")
    run.results.extend(sorted(rows.values(), key=lambda r: r.label.split(" ", 1)[::-1]))


def operation_id_of(operation: Any) -> str:
    return operation.definition.raw.get("operationId", "")


def merge_scenario(result: OperationResult, recorder: Any, document: Document,
                   placeholders: dict[str, str]) -> None:
    method = result.label.split(" ", 1)[0]
    # An operation's row counts its own method only (checks also send other methods on purpose);
    # the stateful row counts every request of its sequences.
    every = method.upper() not in ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS")
    for case_id, interaction in recorder.interactions.items():
        if interaction.response is not None and (every or interaction.request.method == method):
            result.cases += 1
            result.statuses[interaction.response.status_code] += 1
            if generated_valid(recorder, case_id):
                result.valid_statuses[interaction.response.status_code] += 1
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            interaction = recorder.interactions.get(case_id)
            status = interaction.response.status_code if interaction and interaction.response else None
            failure = check.failure_info.failure
            result.add_failure(Failure(
                check=check.name, title=failure.title, message=short_message(failure.message),
                curl=unmask(check.failure_info.code_sample, placeholders), status=status,
                schema_path=schema_pointer(document, failure.operation or result.label, failure, status)))


def generated_valid(recorder: Any, case_id: str) -> bool:
    """Whether Schemathesis generated this case to fit the schema (positive mode)."""
    node = recorder.cases.get(case_id)
    meta = getattr(node.value, "meta", None) if node is not None else None
    return meta is not None and str(meta.generation.mode) == "positive"


def short_message(message: str) -> str:
    lines = message.strip().splitlines()
    head = lines[: lines.index("") if "" in lines else MESSAGE_LINES]
    return "\n".join(head[:MESSAGE_LINES])


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def schema_pointer(document: Document, label: str, failure: Any, status: int | None) -> str | None:
    """The JSON pointer (into the document) of what the answer broke, when the failure names one.

    A response-schema error carries its path inside the response schema; the schema that the
    status code picked is under `responses/<code>` (or `default`) of the operation.
    """
    method, _, path = label.partition(" ")
    if path not in document.body.get("paths", {}):
        return None
    operation = f"#/paths/{escape(path)}/{method.lower()}"
    kind = type(failure).__name__
    responses = document.body["paths"][path].get(method.lower(), {}).get("responses", {})
    code = str(status) if str(status) in responses else ("default" if "default" in responses else None)
    if kind == "JsonSchemaError" and code is not None:
        inner = "/".join(escape(str(part)) for part in failure.schema_path)
        return f"{operation}/responses/{code}/content/application~1json/schema" + (f"/{inner}" if inner else "")
    if kind == "UndefinedStatusCode":
        return f"{operation}/responses"
    if kind in ("UndefinedContentType", "MissingContentType") and code is not None:
        return f"{operation}/responses/{code}/content"
    if kind == "MissingHeaders" and code is not None:
        return f"{operation}/responses/{code}/headers"
    if kind in ("AcceptedNegativeData", "RejectedPositiveData", "MissingHeaderNotRejected"):
        return f"{operation}/requestBody" if "requestBody" in document.body["paths"][path][method.lower()] \
            else f"{operation}/parameters"
    return None
