"""Inspect: health, version and the route table, as llama-stack-client reads them."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

import ggstack
from ggstack.core.context import Context
from ggstack.http.errors import Unavailable
from ggstack.http.render import dumps
from ggstack.providers.catalog import MODULE_API, configured_providers, provider_types_for
from ggstack.providers.health import server_problems

#: HealthInfo when all is well, rendered once: load balancers ask many times a second.
HEALTHY = dumps({"status": "OK"})


async def health(ctx: Context) -> Response:
    """OK only when the database and Chroma answer and every loaded model's thread runs;
    otherwise 503 naming what is down (the spec's HealthInfo has no room for details)."""
    problems = await server_problems(ctx)
    if problems:
        raise Unavailable(f"degraded: {'; '.join(problems)}")
    return Response(HEALTHY, media_type="application/json")


async def version(ctx: Context) -> dict[str, Any]:
    return {"version": ggstack.__version__}


async def list_routes(ctx: Context) -> dict[str, Any]:
    """Only implemented operations: a route that answers 501 is not one a client can use."""
    providers = configured_providers(ctx.settings)
    data: list[dict[str, Any]] = []
    for op in ctx.operations:
        if op.operation_id in ctx.missing:
            continue
        types = provider_types_for(MODULE_API.get(op.module, op.module), providers)
        data.extend({"route": path, "method": op.method, "provider_types": types} for path in op.paths)
    return {"data": data}
