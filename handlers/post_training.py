"""Post-training on llama.cpp's own trainer (docs/training.md): supervised fine-tuning jobs,
their status, checkpoints and cancellation. Preference optimization (DPO) is not implemented (501).

`resources_allocated` in a status holds what the job runs with and, because the spec has no
other place for them, its loss after every step and the reason it failed.
"""

from __future__ import annotations

import math
from typing import Any

from generated.models.llama_stack_experimental import (
    CancelTrainingJobRequest,
    PreferenceOptimizeRequest,
    SupervisedFineTuneRequest,
)
from ggstack.core.context import Context
from ggstack.core.errors import InvalidValueError
from ggstack.engines.admission import ModelDirs
from ggstack.http.errors import InvalidRequest, NotSupported
from ggstack.training.plan import make_plan

#: exp() of a loss past this overflows a double; such a perplexity is reported as this bound's exp.
MAX_LOG_PERPLEXITY = 700.0


async def supervised_fine_tune(body: SupervisedFineTuneRequest, ctx: Context) -> dict[str, Any]:
    """A well-formed request the trainer cannot carry out is 'Invalid value: ...' naming the field."""
    try:
        plan = make_plan(body.model_dump(mode="json", exclude_unset=True),
                         ModelDirs(ctx.settings.model_directories))
        job = await ctx.training.submit(plan)
    except InvalidValueError as exc:
        raise InvalidRequest(f"Invalid value: {exc.message}", param=exc.field) from None
    return {"job_uuid": job["job_uuid"]}


async def preference_optimize(body: PreferenceOptimizeRequest, ctx: Context) -> dict[str, Any]:
    """501 for every well-formed request, as the reference server answers a provider's
    NotImplementedError: the operation is a gap here, not a refusal of this request's values."""
    raise NotSupported("Not implemented: preference-optimize (DPO): llama.cpp's trainer only minimises "
                       "next-token cross-entropy, and DPO needs a loss over pairs of answers against a reference "
                       "model; use supervised-fine-tune", param="algorithm_config")


async def get_training_jobs(ctx: Context) -> dict[str, Any]:
    return {"data": [{"job_uuid": job["job_uuid"]} for job in await ctx.training.all_jobs()]}


async def get_training_job_status(job_uuid: str, ctx: Context) -> dict[str, Any]:
    job = await ctx.training.get(job_uuid)
    status = {key: job[key] for key in ("job_uuid", "status", "scheduled_at", "started_at", "completed_at")
              if job.get(key) is not None}
    return {**status, "resources_allocated": resources(job, ctx),
            "checkpoints": checkpoints(job, ModelDirs(ctx.settings.model_directories))}


async def cancel_training_job(body: CancelTrainingJobRequest, ctx: Context) -> None:
    await ctx.training.cancel(body.job_uuid)


async def get_training_job_artifacts(job_uuid: str, ctx: Context) -> dict[str, Any]:
    job = await ctx.training.get(job_uuid)
    return {"job_uuid": job_uuid, "checkpoints": checkpoints(job, ModelDirs(ctx.settings.model_directories))}


def checkpoints(job: dict[str, Any], dirs: ModelDirs) -> list[dict[str, Any]]:
    """`path` is the file relative to its model directory: what POST /v1/models takes as provider_model_id."""
    return [checkpoint(job["job_uuid"], item, dirs) for item in job["checkpoints"]]


def checkpoint(job_uuid: str, item: dict[str, Any], dirs: ModelDirs) -> dict[str, Any]:
    result = {"identifier": f"{job_uuid}-epoch-{item['epoch']}", "created_at": item["created_at"],
              "epoch": item["epoch"], "post_training_job_id": job_uuid, "path": dirs.display(item["file"])}
    if item["validation_loss"] is not None:
        # no validation steps, no validation loss: the metrics are left out rather than made up
        result["training_metrics"] = {
            "epoch": item["epoch"], "train_loss": item["train_loss"], "validation_loss": item["validation_loss"],
            "perplexity": math.exp(min(item["validation_loss"], MAX_LOG_PERPLEXITY))}
    return result


def resources(job: dict[str, Any], ctx: Context) -> dict[str, Any]:
    setup = ctx.training.setup
    facts: dict[str, Any] = {
        "engine": "llama.cpp", "method": "full-parameter", "dtype": "fp32", "device": "cpu",
        "threads": setup.threads, "window_tokens": setup.window,
        "loss": ("next-token cross-entropy on every token of each packed window"
                 if job["plan"].get("train_on_input") else
                 "next-token cross-entropy on the answer (assistant) tokens of each packed window"),
        "step_losses": [step["loss"] for step in job["steps"]]}
    if job.get("error"):
        facts["error"] = job["error"]
    return facts
