"""Benchmarks: a dataset plus the scoring functions an evaluation applies to it."""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_deprecated import RegisterBenchmarkRequest
from ggstack.core.context import Context
from ggstack.http.errors import Conflict, NotFound
from handlers.datasets import find_dataset

KIND = "benchmark"


async def register_benchmark(body: RegisterBenchmarkRequest, ctx: Context) -> None:
    data = body.model_dump(mode="json", exclude_none=True)
    if await ctx.metadata.get(KIND, data["benchmark_id"]) is not None:
        raise Conflict(f"Benchmark '{data['benchmark_id']}' already exists", param="benchmark_id")
    await find_dataset(ctx, data["dataset_id"])
    await ctx.metadata.put(KIND, data["benchmark_id"], {
        "identifier": data["benchmark_id"],
        "provider_resource_id": data.get("provider_benchmark_id") or data["benchmark_id"],
        "provider_id": data.get("provider_id") or "ggstack",
        "type": "benchmark",
        "dataset_id": data["dataset_id"],
        "scoring_functions": data["scoring_functions"],
        "metadata": data.get("metadata", {}),
    })


async def list_benchmarks(ctx: Context) -> dict[str, Any]:
    return {"data": (await ctx.metadata.list(KIND, limit=None, order="asc")).items}


async def get_benchmark(benchmark_id: str, ctx: Context) -> dict[str, Any]:
    benchmark = await ctx.metadata.get(KIND, benchmark_id)
    if benchmark is None:
        raise NotFound(f"Benchmark '{benchmark_id}' not found", param="benchmark_id")
    return benchmark


async def unregister_benchmark(benchmark_id: str, ctx: Context) -> None:
    await get_benchmark(benchmark_id, ctx)
    await ctx.metadata.delete(KIND, benchmark_id)
