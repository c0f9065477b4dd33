"""Performance: Dell's timed trials of a model (ggstack.performance)."""

from __future__ import annotations

from generated.models.dell_pro_ai_studio import PerformanceRequest, PerformanceResponse
from ggstack.audio.models import DEFAULT_ALIASES, TRANSCRIBE_DEFAULT
from ggstack.core.context import Context
from ggstack.performance.trials import DEFAULT_TRIALS, run_trials


async def dell_performance(body: PerformanceRequest, ctx: Context) -> PerformanceResponse:
    """Dell's example names `whisper`; it means the default speech model, as on the audio routes."""
    name = TRANSCRIBE_DEFAULT if body.model in DEFAULT_ALIASES else body.model
    spec = ctx.models.get(name)
    trials = body.trials or DEFAULT_TRIALS
    report = await run_trials(ctx.models, spec, trials)
    return PerformanceResponse(model=body.model, trials=trials, result=report.result, load_time=report.load_time,
                               execution_times=report.execution_times,
                               average_execution_times=round(report.average, 4), extra_metrics=report.extra_metrics)
