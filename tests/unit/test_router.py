"""The prefix router picks exactly the route Starlette's linear walk picks."""

from __future__ import annotations

import re

from starlette.routing import Match, Router

from ggstack.core.config import Settings
from ggstack.http.app import create_app
from ggstack.http.router import PrefixRouter, literal_prefix


def first_full_match(routes, scope):
    for route in routes:
        if route.matches(scope)[0] is Match.FULL:
            return route
    return None


def test_every_route_path_resolves_to_the_same_route_as_starlette() -> None:
    app = create_app(Settings(telemetry=False))
    assert isinstance(app.router, PrefixRouter)
    routes = app.router.routes
    checked = 0
    for route in routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            scope = {"type": "http", "method": method, "path": concrete, "root_path": ""}
            expected = first_full_match(routes, scope)
            candidates = [r for prefix, r in app.router.indexed() if concrete.startswith(prefix)]
            assert first_full_match(candidates, scope) is expected, (method, concrete)
            checked += 1
    assert checked > 100


def test_literal_prefix_stops_at_the_first_parameter() -> None:
    router = Router()
    router.add_route("/v1/models/{model_id:path}", lambda r: None)
    router.add_route("/v1/health", lambda r: None)
    assert [literal_prefix(r) for r in router.routes] == ["/v1/models/", "/v1/health"]
