"""JSON Schema validators for parts of a spec, with `$ref`s resolved inside that spec.

Request bodies are checked against the spec itself before the pydantic models see them: the
generated models are close to the spec but looser in places (an optional field accepts null),
and the spec is the contract. Each validator is built once per schema and cached.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from ggstack.http.docs import spec_document

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
