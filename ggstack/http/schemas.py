"""JSON Schema validators for parts of a spec, with `$ref`s resolved inside that spec.

Request bodies are checked against the spec itself before the pydantic models see them: the
generated models are close to the spec but looser in places (an optional field accepts null),
and the spec is the contract. Each validator is built once per schema and cached.

python-jsonschema's verdict and its messages are the contract, but walking a chat request with
it costs the event loop ~0.9 ms. A request body schema whose every keyword is one that
jsonschema-rs (compiled) is known to judge the same way also gets a compiled `quick_check`:
a body it accepts is accepted at once; anything else goes to python-jsonschema, which decides
and words the error. So the quick check may be stricter than the contract, never looser
(tests/unit/test_quick_check.py runs both over generated and mutated bodies of every operation).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from ggstack.http.docs import spec_document

try:
    import jsonschema_rs
except ImportError:  # declared in pyproject.toml; an environment made before it only loses the quick check
    jsonschema_rs = None  # type: ignore[assignment]

log = logging.getLogger("ggstack.http.schemas")

SPEC_URI = "urn:ggstack:spec:"


@cache
def registry(spec: str) -> Registry:
    document = spec_document(spec)
    return Registry().with_resource(SPEC_URI + spec, Resource.from_contents(document, DRAFT202012))


@cache
def validator(spec: str, pointer: str) -> Draft202012Validator:
    """A validator for the schema at `pointer` (a `#/...` JSON pointer) in `spec`."""
    return Draft202012Validator({"$ref": SPEC_URI + spec + pointer}, registry=registry(spec))


def operation_pointer(spec_path: str, method: str, *parts: str) -> str:
    """`#/paths/<path>/<method>/<parts...>` with each part escaped as JSON pointers require."""
    escaped = [part.replace("~", "~0").replace("/", "~1") for part in (spec_path, method.lower(), *parts)]
    return "#/paths/" + "/".join(escaped)


@cache
def request_body_pointer(spec: str, spec_path: str, method: str, media_type: str) -> str:
    return operation_pointer(spec_path, method, "requestBody", "content", media_type, "schema")


def first_problem(schema_validator: Draft202012Validator, instance: Any) -> ValidationError | None:
    """The most telling error: inside an anyOf/oneOf, the errors of the one branch the value means.

    Upstream writes most optional fields as `anyOf: [<schema>, {type: 'null'}]` and unions with a
    discriminator; "is not valid under any of the given schemas" would hide what is wrong.
    """
    error = best_match(schema_validator.iter_errors(instance))
    while error is not None and error.validator in ("anyOf", "oneOf") and (inner := meant_branch(error)):
        error = best_match(inner)
    return error


def meant_branch(error: ValidationError) -> list[ValidationError]:
    """The errors of the branch the discriminator names, else of the only branch of the value's type."""
    branches = error.schema.get(error.validator, []) if isinstance(error.schema, dict) else []
    discriminator = error.schema.get("discriminator") if isinstance(error.schema, dict) else None
    if isinstance(discriminator, dict) and isinstance(error.instance, dict):
        value = error.instance.get(discriminator.get("propertyName"))
        ref = discriminator.get("mapping", {}).get(value) if isinstance(value, str) else None
        named = [i for i, branch in enumerate(branches) if isinstance(branch, dict) and branch.get("$ref") == ref]
        if ref is not None and len(named) == 1:
            return [e for e in error.context if e.relative_schema_path[0] == named[0]]
    own_type = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
    return own_type if len({e.relative_schema_path[0] for e in own_type}) == 1 else []


def describe(error: ValidationError) -> tuple[str, str | None]:
    """(message, param): where in the body, and what is wrong, in one line."""
    where = ".".join(str(part) for part in error.absolute_path)
    message = error.message if len(error.message) <= 300 else error.message[:300] + "…"
    if error.validator == "not" and error.validator_value == {} and where:
        # `not: {}` is how an overlay says a field this server cannot honour must be left out;
        # jsonschema's "should not be valid under {}" would not say so.
        message = "this server takes no value here (leave it out or send null)"
    return (f"{where}: {message}" if where else message), (where or None)


#: Keywords both validators judge alike (Draft 2020-12, formats not checked, as here): what the
#: specs' request bodies use. `pattern` is among them because the compiled validator is given
#: Python's `re.search` for it (`PythonPattern`): Rust's regex differs (`$` before a final
#: newline, which characters `\s` covers).
AGREED_KEYWORDS = frozenset({
    "$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minProperties", "maxProperties", "propertyNames", "pattern", "allOf", "anyOf",
    "oneOf", "not", "if", "then", "else", "contains", "maxContains",
})
#: Keywords neither validator checks: annotations, and OpenAPI's own (`discriminator` only guides
#: `meant_branch` above; `format` is not checked by python-jsonschema without a format checker).
IGNORED_KEYWORDS = frozenset({
    "title", "description", "default", "examples", "example", "deprecated", "readOnly", "writeOnly",
    "format", "contentEncoding", "contentMediaType", "discriminator", "$comment", "nullable", "xml",
    "externalDocs",
})
#: Where subschemas sit, by keyword: one schema, a list of them, or a name -> schema map.
ONE_SCHEMA = ("additionalProperties", "items", "propertyNames", "not", "if", "then", "else", "contains",
              "unevaluatedProperties", "unevaluatedItems", "additionalItems")
SCHEMA_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
SCHEMA_MAP = ("properties", "patternProperties", "$defs", "dependentSchemas")


class PythonPattern:
    """`pattern` judged by Python's `re.search`, exactly as python-jsonschema judges it."""

    def __init__(self, parent_schema: dict[str, Any], value: str, schema_path: list[str | int]) -> None:
        self.search = re.compile(value).search
        self.value = value

    def validate(self, instance: Any) -> None:
        if isinstance(instance, str) and not self.search(instance):
            raise ValueError(f"{instance!r} does not match {self.value!r}")


@cache
def compiled_validators_installed() -> bool:
    if jsonschema_rs is None:
        log.warning("jsonschema-rs is not installed: every request body is checked by python-jsonschema "
                    "alone (pip install -e . installs it)")
    return jsonschema_rs is not None


@cache
def compiled_registry(spec: str) -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(SPEC_URI + spec, spec_document(spec))])


@cache
def quick_check(spec: str, pointer: str) -> Callable[[Any], bool] | None:
    """A compiled `is_valid` for the schema at `pointer`, or None when that schema uses a keyword
    outside AGREED_KEYWORDS (decided once per schema). True means valid; False means "ask
    python-jsonschema", which alone decides what is refused and how it is worded."""
    if not compiled_validators_installed() or unagreed_keywords(spec, pointer):
        return None
    try:
        compiled = jsonschema_rs.Draft202012Validator(
            {"$ref": SPEC_URI + spec + quote(pointer, safe="#/~")}, registry=compiled_registry(spec),
            validate_formats=False, keywords={"pattern": PythonPattern})
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        log.warning("no quick check for %s %s: %s", spec, pointer, exc)
        return None

    def accepts(instance: Any) -> bool:
        try:
            return compiled.is_valid(instance)
        except Exception:  # noqa: BLE001 - e.g. a lone surrogate has no UTF-8 form: let python-jsonschema judge
            return False

    return accepts


def unagreed_keywords(spec: str, pointer: str) -> set[str]:
    """The keywords under `pointer` that keep it from a quick check (extensions, `x-...`, are ignored)."""
    document = spec_document(spec)
    used = set(schema_keywords(document, resolve(document, pointer)))
    return {key for key in used - AGREED_KEYWORDS - IGNORED_KEYWORDS if not key.startswith("x-")}


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The value at a `#/...` JSON pointer of `document`."""
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def schema_keywords(document: dict[str, Any], schema: Any, seen: set[int] | None = None) -> Iterator[str]:
    """Every keyword of `schema` and of every schema it reaches, `$ref`s followed (each once)."""
    seen = set() if seen is None else seen
    if not isinstance(schema, dict) or id(schema) in seen:
        return
    seen.add(id(schema))
    yield from schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#/"):
        yield "$ref to " + ref  # outside the document: not something the quick check is known to agree on
    children = [resolve(document, ref)] if isinstance(ref, str) and ref.startswith("#/") else []
    children += [schema.get(key) for key in ONE_SCHEMA]
    children += [child for key in SCHEMA_LIST if isinstance(schema.get(key), list) for child in schema[key]]
    children += [child for key in SCHEMA_MAP if isinstance(schema.get(key), dict) for child in schema[key].values()]
    for child in children:
        yield from schema_keywords(document, child, seen)
