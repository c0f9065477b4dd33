"""Dell's /performance: timed trials of real requests against one model, by the model's kind.

Each trial is the work a client would ask of that kind of model (a short chat completion, an
embedding batch, a rerank of that batch, the bundled spoken clip, a small upscale), timed end to
end on the engine, so the numbers include queueing behind other requests, as a client would see them.
"""

from __future__ import annotations

import importlib.resources
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import numpy as np

from ggstack.audio.decode import PcmWindows
from ggstack.audio.whisper import AsrOptions
from ggstack.engines.registry import ModelRegistry, ModelSpec
from ggstack.inference import generation
from ggstack.inference.options import sampling_options

MAX_TRIALS = 50
DEFAULT_TRIALS = 5
CHAT_PROMPT = "Say hello in one short sentence."
CHAT_TOKENS = 16
EMBED_BATCH = [f"Performance trial sentence number {i} about local models." for i in range(8)]
IMAGE_SIDE = 32

RERANK_QUERY = "Which sentence is about local models?"
RESULTS = {"llm": "Chat Completion performance measured.", "embedding": "Embedding performance measured.",
           "rerank": "Rerank performance measured.", "asr": "Transcription performance measured.",
           "image": "Image upscale performance measured."}


@dataclass
class Report:
    load_time: float
    result: str
    execution_times: list[float] = field(default_factory=list)
    extra_metrics: dict[str, list[float]] | None = None

    @property
    def average(self) -> float:
        return sum(self.execution_times) / len(self.execution_times)


async def run_trials(models: ModelRegistry, spec: ModelSpec, trials: int) -> Report:
    """Load the model if needed (timed), then run and time `trials` requests of its kind."""
    already = models.is_loaded(spec.identifier)
    started = time.perf_counter()
    engine = await ENGINES[spec.model_type](models, spec.identifier)
    load_time = 0.0 if already else time.perf_counter() - started
    note = " The model was already loaded, so load_time is 0." if already else ""
    report = Report(load_time=round(load_time, 4), result=RESULTS[spec.model_type] + note)
    trial = await TRIALS[spec.model_type](engine)
    for _ in range(trials):
        started = time.perf_counter()
        extra = await trial()
        report.execution_times.append(round(time.perf_counter() - started, 4))
        for key, value in extra.items():
            report.extra_metrics = report.extra_metrics or {}
            report.extra_metrics.setdefault(key, []).append(round(value, 4))
    return report


Trial = Callable[[], Awaitable[dict[str, float]]]


async def chat_trial(engine: Any) -> Trial:
    from ggstack.inference.messages import openai_messages
    from ggstack.inference.prompt import plan_chat

    plan = plan_chat(engine, openai_messages([{"role": "user", "content": CHAT_PROMPT}]),
                     sampling_options(max_tokens=CHAT_TOKENS, temperature=0.0))

    async def trial() -> dict[str, float]:
        started = time.perf_counter()
        first: float | None = None
        tokens = 0
        async for event in generation.generate_events(engine, [plan.prompt], plan.options):
            if isinstance(event, generation.TextDelta) and first is None:
                first = time.perf_counter() - started
            if isinstance(event, generation.Finished):
                tokens = event.usage.completion_tokens
        total = time.perf_counter() - started
        first = total if first is None else first
        decode = total - first
        return {"time_to_first_token": first,
                "tokens_per_second": (tokens - 1) / decode if tokens > 1 and decode > 0 else tokens / total}

    return trial


async def embedding_trial(engine: Any) -> Trial:
    async def trial() -> dict[str, float]:
        await engine.embed(EMBED_BATCH)
        return {}

    return trial


async def rerank_trial(engine: Any) -> Trial:
    async def trial() -> dict[str, float]:
        await engine.score(RERANK_QUERY, EMBED_BATCH)
        return {}

    return trial


async def asr_trial(engine: Any) -> Trial:
    clip = importlib.resources.files("ggstack.audio").joinpath("data/clip.flac").read_bytes()

    async def trial() -> dict[str, float]:
        started = time.perf_counter()
        windows = await anyio.to_thread.run_sync(lambda: PcmWindows(io.BytesIO(clip), window_seconds=30.0))
        transcript = await engine.transcribe(windows, AsrOptions(language="en"))
        return {"real_time_factor": (time.perf_counter() - started) / transcript.duration}

    return trial


async def image_trial(engine: Any) -> Trial:
    from PIL import Image

    ramp = np.linspace(0, 255, IMAGE_SIDE, dtype=np.uint8)
    picture = Image.fromarray(np.stack([np.add.outer(ramp, ramp) // 2, np.tile(ramp, (IMAGE_SIDE, 1)),
                                        np.tile(ramp[:, None], (1, IMAGE_SIDE))], axis=-1), "RGB")

    async def trial() -> dict[str, float]:
        await engine.upscale(picture)
        return {}

    return trial


ENGINES = {"llm": ModelRegistry.chat, "embedding": ModelRegistry.embedder, "rerank": ModelRegistry.reranker,
           "asr": ModelRegistry.asr, "image": ModelRegistry.upscaler}
TRIALS = {"llm": chat_trial, "embedding": embedding_trial, "rerank": rerank_trial, "asr": asr_trial,
          "image": image_trial}
