"""Load the specs we serve, with our overlays applied, and check them against OpenAPI 3.1.

`specs/<name>.yaml` is either an upstream document kept byte-for-byte or one we wrote;
`specs/overlays/<name>.yaml`, when present, holds every fix we make to it. Everything
downstream (codegen, request validation, contract tests) reads specs through `load_spec`,
so no one ever sees an un-overlaid upstream document by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import OpenAPIV31SpecValidator

from codegen.overlay import apply_overlay
from codegen.requests import relax_request_schemas

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
OVERLAYS_DIR = SPECS_DIR / "overlays"
SPEC_NAMES = ("llama-stack-stable", "llama-stack-experimental", "llama-stack-deprecated", "llama-stack-inference",
              "dell-pro-ai-studio")

# llama-stack generates its three documents from one codebase, so a schema is the same
# wherever it appears; its fixes live once, in this overlay, applied before each document's
# own. An action there may miss a document without that schema, but must fit one of them.
SHARED_OVERLAY = "llama-stack-shared"
SHARING = ("llama-stack-stable", "llama-stack-experimental", "llama-stack-deprecated")

# The C loader parses the 300 kB llama-stack spec about ten times faster than the pure-Python one.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecInvalid(ValueError):
    """A spec, after its overlay, is not valid OpenAPI 3.1; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} OpenAPI error(s):\n" + "\n".join(errors))
        self.errors = errors


def read_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)


def overlay_names(name: str) -> list[str]:
    """The overlays applied to `specs/<name>.yaml`, in order."""
    own = [name] if (OVERLAYS_DIR / f"{name}.yaml").exists() else []
    return [SHARED_OVERLAY, *own] if name in SHARING else own


def load_spec(name: str, unmatched: list[str] | None = None) -> dict[str, Any]:
    """`specs/<name>.yaml` with its overlays applied (`overlay_names`), then the request-schema
    rules (codegen/requests.py) that hold for every document.

    The shared overlay's actions that match nothing here are appended to `unmatched`.
    """
    document = read_yaml(SPECS_DIR / f"{name}.yaml")
    for overlay in overlay_names(name):
        shared = overlay == SHARED_OVERLAY
        skipped: list[str] | None = [] if shared else None
        document = apply_overlay(document, read_yaml(OVERLAYS_DIR / f"{overlay}.yaml"), skipped)
        if shared and unmatched is not None:
            unmatched.extend(skipped or [])
    return relax_request_schemas(document)


def stale_shared_actions() -> list[str]:
    """Targets of the shared overlay that match nothing in any document sharing it."""
    misses = []
    for name in SHARING:
        unmatched: list[str] = []
        load_spec(name, unmatched)
        misses.append(set(unmatched))
    return sorted(set.intersection(*misses))


def spec_errors(document: dict[str, Any]) -> list[str]:
    """Every OpenAPI 3.1 error openapi-spec-validator finds, one line each.

    The document is first checked against the OpenAPI meta-schema alone: the validator's
    deeper checks (defaults, parameters, operationIds) assume that structure and raise
    instead of reporting when it is missing.
    """
    validator = OpenAPIV31SpecValidator(document)
    structural = list(validator.schema_validator.iter_errors(document))
    if structural:
        return [f"{error.json_path}: {error.message.splitlines()[0]}" for error in structural]
    # These errors carry no location in the document (a bad `default` reports the path
    # inside the default value), so only the message is useful.
    return [error.message for error in validator.iter_errors()]


def validate_spec(document: dict[str, Any]) -> None:
    """Raise `SpecInvalid` carrying all errors if `document` is not valid OpenAPI 3.1."""
    errors = spec_errors(document)
    if errors:
        raise SpecInvalid(errors)
