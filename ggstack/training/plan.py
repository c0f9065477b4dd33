"""A supervised-fine-tune request checked against what llama.cpp's trainer can do, as a plan.

Every field of the request is either honoured or refused here, before a job exists: the trainer
does one optimizer step per packed window, full-parameter, with next-token loss on the answer
tokens (or, with `train_on_input`, on every token; see `ggstack.training.native`), so the fields that would ask for something else are refused
naming the field, never silently ignored. `logger_config` only names where torchtune would log
and is kept on the job as given; `dtype` is reported as fp32, the only type it trains in.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.engines.admission import ModelDirs
from ggstack.training.native import OPTIMIZERS

#: Epochs one job may ask for; each writes a full-size checkpoint.
MAX_EPOCHS = 100
DEFAULT_LR = 1e-5
#: Where checkpoints go when the request names no checkpoint_dir: under the first model directory,
#: so a checkpoint can be registered as a model (POST /v1/models only opens files there).
CHECKPOINTS = "finetuned"


@dataclass(frozen=True)
class Plan:
    job_uuid: str
    model: str
    dataset_id: str
    validation_dataset_id: str | None
    data_format: str
    shuffle: bool
    n_epochs: int
    max_steps_per_epoch: int
    max_validation_steps: int
    optimizer: str
    lr: float
    weight_decay: float
    num_warmup_steps: int
    checkpoint_dir: str
    logger_config: dict[str, Any]
    #: the spec's default: loss on the answer tokens only
    train_on_input: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_at(self, step: int) -> float:
        """Linear warmup over the first `num_warmup_steps` optimizer steps (counted from 0)."""
        if step < self.num_warmup_steps:
            return self.lr * (step + 1) / (self.num_warmup_steps + 1)
        return self.lr


def make_plan(body: dict[str, Any], dirs: ModelDirs) -> Plan:
    """`body` is the request as JSON (the generated model's dump, unset fields left out)."""
    _refuse_unsupported(body)
    training = body["training_config"]
    data = training.get("data_config")
    if not data:
        raise InvalidValueError("training_config.data_config is required: it names the dataset to train on",
                                field="training_config.data_config")
    if not body.get("model"):
        raise InvalidValueError("model is required: the registered LLM to fine-tune", field="model")
    optimizer = training.get("optimizer_config") or {}
    return Plan(
        job_uuid=_job_uuid(body["job_uuid"]), model=body["model"], dataset_id=data["dataset_id"],
        validation_dataset_id=data.get("validation_dataset_id"), data_format=data["data_format"],
        shuffle=bool(data["shuffle"]),
        n_epochs=_bounded(training["n_epochs"], "training_config.n_epochs", 1, MAX_EPOCHS),
        max_steps_per_epoch=_bounded(training.get("max_steps_per_epoch", 1),
                                     "training_config.max_steps_per_epoch", 1, 1_000_000),
        max_validation_steps=_bounded(training.get("max_validation_steps", 1),
                                      "training_config.max_validation_steps", 0, 10_000),
        optimizer=optimizer.get("optimizer_type", "adamw"),
        lr=_rate(optimizer.get("lr", DEFAULT_LR), "training_config.optimizer_config.lr", positive=True),
        weight_decay=_rate(optimizer.get("weight_decay", 0.0), "training_config.optimizer_config.weight_decay"),
        num_warmup_steps=_bounded(optimizer.get("num_warmup_steps", 0),
                                  "training_config.optimizer_config.num_warmup_steps", 0, 1_000_000),
        checkpoint_dir=str(_checkpoint_dir(body.get("checkpoint_dir"), body["job_uuid"], dirs)),
        logger_config=dict(body.get("logger_config") or {}),
        train_on_input=bool(data.get("train_on_input", False)),
    )


def _refuse_unsupported(body: dict[str, Any]) -> None:
    training = body["training_config"]
    data = training.get("data_config") or {}
    if body.get("algorithm_config"):
        kind = body["algorithm_config"].get("type")
        raise InvalidValueError(f"algorithm_config {kind}: llama.cpp's trainer has no {kind} training at this "
                                "version; leave algorithm_config out for full-parameter fine-tuning",
                                field="algorithm_config")
    if body.get("hyperparam_search_config"):
        raise InvalidValueError("hyperparam_search_config must be empty: this server runs no hyperparameter search",
                                field="hyperparam_search_config")
    if training.get("gradient_accumulation_steps", 1) not in (None, 1):
        raise InvalidValueError("training_config.gradient_accumulation_steps must be 1: llama.cpp's trainer "
                                "accumulates only over the micro-batches of one window, which would cost the K/V "
                                "projections their gradients, and steps the optimizer after every window",
                                field="training_config.gradient_accumulation_steps")
    if data.get("batch_size", 1) != 1:
        raise InvalidValueError("training_config.data_config.batch_size must be 1: a step is one packed window "
                                "of training_window tokens", field="training_config.data_config.batch_size")
    if data.get("packed") is False:
        raise InvalidValueError("training_config.data_config.packed: rows are always packed end to end into "
                                "training_window-token windows (the trainer's fixed window)",
                                field="training_config.data_config.packed")
    for name, value in (training.get("efficiency_config") or {}).items():
        if value:
            raise InvalidValueError(f"training_config.efficiency_config.{name} is not available on llama.cpp's "
                                    "CPU trainer", field=f"training_config.efficiency_config.{name}")
    optimizer = (training.get("optimizer_config") or {}).get("optimizer_type", "adamw")
    if optimizer not in OPTIMIZERS:
        raise InvalidValueError(f"optimizer_type {optimizer} is not one of {', '.join(OPTIMIZERS)}",
                                field="training_config.optimizer_config.optimizer_type")


#: The overlaid schema's `job_uuid` pattern, matched as JSON Schema matches it (a search).
JOB_UUID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")


def _job_uuid(value: str) -> str:
    if not JOB_UUID.search(value):
        raise InvalidValueError("job_uuid must be 1-128 letters, digits, '-', '_' or '.' (not first)",
                                field="job_uuid")
    return value


def _bounded(value: Any, field: str, low: int, high: int) -> int:
    if value is None or not low <= int(value) <= high:
        raise InvalidValueError(f"{field} must be between {low} and {high}", field=field)
    return int(value)


def _rate(value: Any, field: str, *, positive: bool = False) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0) or number > 1:
        raise InvalidValueError(f"{field} must be {'above' if positive else 'at least'} 0 and at most 1",
                                field=field)
    return number


def _checkpoint_dir(value: str | None, job_uuid: str, dirs: ModelDirs) -> Path:
    """Inside a model directory: relative names are taken from the first one."""
    home = dirs.dirs[0]
    target = (home / CHECKPOINTS / job_uuid) if not value else (Path(value) if Path(value).is_absolute()
                                                                 else home / value)
    try:
        target = target.resolve()
    except (OSError, ValueError):  # a NUL byte, a loop of symlinks
        target = Path("/")
    if dirs.inside(target) is None:
        raise InvalidValueError("checkpoint_dir must be inside the server's model directories (model_dirs), "
                                "where checkpoints can be registered as models", field="checkpoint_dir")
    return target
