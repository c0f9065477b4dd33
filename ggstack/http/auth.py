"""API keys: `Authorization: Bearer <key>` on every route but /v1/health, when keys are configured.

The key is hashed and looked up among the configured digests; the caller's name then rides
in a context variable (ggstack.core.access) that the metadata store reads to scope objects.
Without configured keys nothing is checked and everything is shared, as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ggstack.core.access import Principal, current_principal, key_digest
from ggstack.http.errors import Unauthorized
from ggstack.http.guard import refuse

#: Answers that must work for a load balancer or a supervisor holding no key.
OPEN_PATHS = frozenset({"/v1/health"})


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class ApiKeyAuth:
    """ASGI middleware: 401 (in the path's error shape) unless the request carries a known key."""

    def __init__(self, app: ASGIApp, keys: Mapping[str, Principal]) -> None:
        self.app = app
        self.keys = dict(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = bearer_token(Headers(scope=scope))
        principal = self.keys.get(key_digest(token)) if token else None
        if principal is None:
            reason = "API key is not valid" if token else "an API key is required: send 'Authorization: Bearer <key>'"
            await refuse(Unauthorized(reason), scope)(scope, receive, send)
            return
        reset = current_principal.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            current_principal.reset(reset)
