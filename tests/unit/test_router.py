"""The prefix router picks exactly the route Starlette's linear walk picks."""

from __future__ import annotations

import re

from starlette.routing import Match, Router

from ggstack.core.config import Settings
from ggstack.http.app import create_app
from ggstack.http.router import PrefixRouter, literal_prefix, route_head


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
            candidates = [r for prefix, r in app.router.candidates(concrete) if concrete.startswith(prefix)]
            assert first_full_match(candidates, scope) is expected, (method, concrete)
            checked += 1
    assert checked > 100


def test_a_request_tries_a_small_part_of_the_table() -> None:
    app = create_app(Settings(telemetry=False))
    total = len(app.router.routes)
    for path in ("/v1/health", "/v1/models", "/v1/openai/v1/models", "/v1/vector_stores/vs_1/search"):
        assert len(app.router.candidates(path)) < total / 4, path


def test_a_path_without_parameters_tries_only_the_routes_that_take_it() -> None:
    app = create_app(Settings(telemetry=False))
    assert [(r.path, r.methods) for _, r in app.router.candidates("/v1/openai/v1/models")] == [
        ("/v1/openai/v1/models", {"GET", "HEAD"})]
    assert {method for _, r in app.router.candidates("/v1/models") for method in r.methods} == {"GET", "HEAD", "POST"}
    assert len(app.router.candidates("/v1/openai/v1/models/m1")) > 10  # a parameter: its group


def test_literal_prefix_stops_at_the_first_parameter() -> None:
    router = Router()
    router.add_route("/v1/models/{model_id:path}", lambda r: None)
    router.add_route("/v1/health", lambda r: None)
    assert [literal_prefix(r) for r in router.routes] == ["/v1/models/", "/v1/health"]


def test_only_routes_whose_first_two_segments_are_literal_are_grouped() -> None:
    router = Router()
    router.add_route("/v1/models/{model_id:path}", lambda r: None)
    router.add_route("/v1/health", lambda r: None)
    router.add_route("/v1/{anything}", lambda r: None)
    router.add_route("/openapi/{name}.json", lambda r: None)
    assert [route_head(r) for r in router.routes] == ["/v1/models", "/v1/health", None, None]
