"""Browser safety: which Hosts and Origins may talk to the server at all.

A local server is reachable by every web page the user opens. Two attacks follow, and two
checks stop them before any route runs:

- Cross-site requests (CSRF): a page on evil.example POSTs to 127.0.0.1. Browsers name the
  page in `Origin`, so a request whose Origin is not a loopback origin or one configured in
  `allowed_origins` is refused. Clients that are not browsers send no Origin and pass.
- DNS rebinding: evil.example re-points its own name at 127.0.0.1, so the page becomes
  "same-origin" and can read answers. The browser still sends `Host: evil.example`, so a Host
  that is not a loopback name, the bound address or one configured in `allowed_hosts` is refused.

CORS headers are sent only for origins configured in `allowed_origins` (Starlette's
CORSMiddleware, inside this guard), so no page can read answers unless the operator says so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ggstack.http.errors import ApiError, Forbidden
from ggstack.http.render import error_response, error_shape_for_path

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})


def split_host(host: str) -> str:
    """`Host` or an origin's netloc without its port, lower-cased (`[::1]:80` -> `::1`)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """The names and origins the operator allows, beside loopback which is always allowed."""

    def __init__(self, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = (),
                 bind_host: str = "") -> None:
        self.hosts = {split_host(h) for h in allowed_hosts}
        if bind_host not in WILDCARD_BINDS:
            self.hosts.add(split_host(bind_host))
        self.origins = {origin.rstrip("/").lower() for origin in allowed_origins}

    def host_allowed(self, host: str | None) -> bool:
        # HTTP/1.0 clients may omit Host; browsers never do, so rebinding needs one.
        if not host:
            return True
        name = split_host(host)
        return "*" in self.hosts or name in self.hosts or is_loopback(name)

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        if "*" in self.origins or origin in self.origins:
            return True
        # `Origin: null` (sandboxed frames, file://) names no page the operator could vouch for.
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and is_loopback(split_host(parts.netloc))

    def refusal(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with this Host and Origin may not proceed, or None."""
        if not self.host_allowed(host):
            return (f"Host '{host}' is not allowed: use a loopback name or add it to "
                    "allowed_hosts in the run config")
        if not self.origin_allowed(origin):
            return f"Origin '{origin}' is not allowed: add it to allowed_origins in the run config"
        return None


#: Distinct (Host, Origin) pairs whose verdict is kept; past that the kept ones are forgotten.
VERDICTS_KEPT = 1024


class BrowserGuard:
    """ASGI middleware: refuse (403) a disallowed Host or Origin before routing.

    A server sees the same few Host and Origin values over and over, and working a verdict
    out (parsing an IP address, splitting the origin's URL) cost more than the rest of this
    middleware, so each pair's verdict is kept (the policy never changes while serving).
    """

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy
        self._verdicts: dict[tuple[bytes | None, bytes | None], str | None] = {}

    def verdict(self, scope: Scope) -> str | None:
        host = origin = None
        for name, value in scope["headers"]:  # ASGI names are lower-case; the first of each counts
            if name == b"host" and host is None:
                host = value
            elif name == b"origin" and origin is None:
                origin = value
        key = (host, origin)
        if key not in self._verdicts:
            if len(self._verdicts) >= VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[key] = self.policy.refusal(*(v.decode("latin-1") if v is not None else None for v in key))
        return self._verdicts[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reason = self.verdict(scope)
            if reason is not None:
                await refuse(Forbidden(reason), scope)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def refuse(error: ApiError, scope: Scope) -> Response:
    """The response a middleware sends for `error`, in the error shape of the path's family."""
    return error_response(error, error_shape_for_path(scope["path"]))
