"""A Starlette router that tries only the routes whose literal path prefix fits the request.

ggstack serves a few hundred routes. Starlette's router runs every route's regex in turn until
one matches, which cost about half a millisecond per request for routes near the end of the
table: more than the whole of a cheap handler. Each route's path up to its first `{` is a
literal prefix that any path it matches must start with, so a `startswith` test can skip the
regex of almost every route. Order and outcomes stay Starlette's own: the first full match
wins; anything else (405, redirect, 404) goes through Starlette's own walk.
"""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Router
from starlette.types import Receive, Scope, Send


def literal_prefix(route: BaseRoute) -> str:
    """The part of the route's path before any parameter ("" when it has no path)."""
    path = getattr(route, "path", None)
    return path.split("{", 1)[0] if isinstance(path, str) else ""


class PrefixRouter(Router):
    """`Router` with a prefix test in front of each route's own match."""

    _indexed: list[tuple[str, BaseRoute]] | None = None

    def indexed(self) -> list[tuple[str, BaseRoute]]:
        if self._indexed is None or len(self._indexed) != len(self.routes):
            self._indexed = [(literal_prefix(route), route) for route in self.routes]
        return self._indexed

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        scope.setdefault("router", self)
        path = get_route_path(scope)
        for prefix, route in self.indexed():
            if not path.startswith(prefix):
                continue
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
        # No route takes this method at this path: Starlette's own walk finds the 405, the
        # redirect or the 404, exactly as it would have.
        await super().app(scope, receive, send)
