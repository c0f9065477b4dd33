"""A Starlette router that tries only the routes that could match the request's path.

ggstack serves a few hundred routes. Starlette's router runs every route's regex in turn until
one matches, which cost about half a millisecond per request for routes near the end of the
table: more than the whole of a cheap handler. Two cheap tests skip almost all of them:

- Each route's path up to its first `{` is a literal prefix that any path it matches must
  start with.
- When that prefix holds the path's first two segments whole (`/v1/models/{id}` -> `/v1/models`,
  or `/v1/health` with no parameter at all), the route can only match paths with those same two
  segments, so routes are grouped by them once and a request looks at its own group only
  (about a tenth of the table instead of all of it).
- A path that is some route's whole path (no parameter: `/v1/openai/v1/models`) is looked up
  in a table of the routes whose pattern takes that exact path, worked out once, so the
  busiest paths try one or two routes rather than their group's (43 for `/v1/openai/v1/...`).

Order and outcomes stay Starlette's own: the first full match in table order wins; anything
else (405, redirect, 404) goes through Starlette's own walk.
"""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

Candidates = list[tuple[str, BaseRoute]]


def literal_prefix(route: BaseRoute) -> str:
    """The part of the route's path before any parameter ("" when it has no path)."""
    path = getattr(route, "path", None)
    return path.split("{", 1)[0] if isinstance(path, str) else ""


def head(path: str) -> str:
    """The first two segments: `/v1/models/x/y` -> `/v1/models`."""
    return "/".join(path.split("/", 3)[:3])


def route_head(route: BaseRoute) -> str | None:
    """The head every path this route matches has, or None when paths of many heads may match
    (a parameter or a mount inside the first two segments)."""
    prefix = literal_prefix(route)
    exact = isinstance(route, Route) and "{" not in route.path
    if exact or prefix.count("/") >= 3:
        return head(prefix)
    return None


def takes(route: BaseRoute, path: str) -> bool:
    """Whether the route's pattern takes this path (by path alone; the method is checked per
    request). A route with no pattern of its own is kept: only trying it can tell."""
    pattern = getattr(route, "path_regex", None)
    return pattern is None or pattern.match(path) is not None


class PrefixRouter(Router):
    """`Router` that tries, in table order, only the routes of the request's head whose literal
    prefix fits, plus the few routes that no head pins down."""

    _index: tuple[int, dict[str, Candidates], Candidates, dict[str, Candidates]] | None = None

    def index(self) -> tuple[dict[str, Candidates], Candidates, dict[str, Candidates]]:
        """(candidates by head, candidates for any other head, candidates by exact path), rebuilt
        if routes were added."""
        if self._index is None or self._index[0] != len(self.routes):
            heads = [route_head(route) for route in self.routes]
            entries = [(literal_prefix(route), route) for route in self.routes]
            anywhere = [entry for entry, h in zip(entries, heads, strict=True) if h is None]
            by_head = {h: [entry for entry, other in zip(entries, heads, strict=True) if other in (h, None)]
                       for h in set(heads) if h is not None}
            exact = {path: [(prefix, route) for prefix, route in by_head.get(head(path), anywhere)
                            if path.startswith(prefix) and takes(route, path)]
                     for path in (route.path for route in self.routes
                                  if isinstance(route, Route) and "{" not in route.path)}
            self._index = (len(self.routes), by_head, anywhere, exact)
        return self._index[1], self._index[2], self._index[3]

    def candidates(self, path: str) -> Candidates:
        """The (prefix, route) pairs worth trying for `path`, in table order."""
        by_head, anywhere, exact = self.index()
        found = exact.get(path)
        return found if found is not None else by_head.get(head(path), anywhere)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        scope.setdefault("router", self)
        path = get_route_path(scope)
        for prefix, route in self.candidates(path):
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
