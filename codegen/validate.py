"""Every overlaid document must be a valid OpenAPI document before anything is generated from it.

Overlays edit upstream specs by JSONPath; a wrong target or value can leave a document that
datamodel-code-generator still reads but clients and validators do not. The runtime trusts
these documents (the response validator skips openapi-core's own slow check), so the check
happens here, once, and a failure names the document and the place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError


class InvalidDocument(RuntimeError):
    """An overlaid (or merged) document is not valid OpenAPI."""


def check_document(name: str, document: Mapping[str, Any]) -> None:
    """Raise InvalidDocument naming `name`, the JSON path at fault and the validator's reason."""
    try:
        validate(document)
    except OpenAPIValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(document)"
        raise InvalidDocument(f"{name}: not a valid OpenAPI document at {where}: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - $ref resolution fails with the referencing library's own types
        raise InvalidDocument(f"{name}: not a valid OpenAPI document: {exc}") from None
