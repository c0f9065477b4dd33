"""Tokens per second straight from the engine, no HTTP: the ceiling a server benchmark is compared to.

Run alone: `python bench/engine_direct.py` prints the rate for the bundled SmolLM2.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from ggstack.engines.base import Finish, SamplingOptions
from ggstack.engines.registry import ModelRegistry, ModelSpec, default_model_specs

PROMPT = "Write a long story about a dragon who learns to bake bread."


async def _measure(spec: ModelSpec, max_tokens: int, runs: int) -> float:
    registry = ModelRegistry()
    registry.register(spec)
    engine = await registry.chat(spec.identifier)
    try:
        prompt = engine.render_chat([{"role": "user", "content": PROMPT}])
        options = SamplingOptions(temperature=0, max_tokens=max_tokens)
        async for _ in engine.generate(prompt, SamplingOptions(temperature=0, max_tokens=4)):
            pass  # warm-up: page in the weights, fill the prompt cache
        tokens, elapsed = 0, 0.0
        for _ in range(runs):
            started = time.perf_counter()
            async for item in engine.generate(prompt, options):
                if isinstance(item, Finish):
                    tokens += item.completion_tokens
            elapsed += time.perf_counter() - started
        return tokens / elapsed
    finally:
        await registry.close()


def direct_tok_per_s(spec: ModelSpec, *, max_tokens: int = 128, runs: int = 3) -> float:
    """Completion tokens per second of greedy generation through the engine (prompt cached after warm-up)."""
    return asyncio.run(_measure(spec, max_tokens, runs))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        specs = [s for s in default_model_specs(Path(tmp)) if s.model_type == "llm"]
        for spec in specs:
            print(f"{spec.identifier}: {direct_tok_per_s(spec):.1f} tok/s (engine direct, greedy, 128 tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
