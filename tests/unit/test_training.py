"""Fine-tuning pieces that need no model: request checks, row rendering, packing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggstack.core.errors import InvalidValueError
from ggstack.engines.admission import ModelDirs
from ggstack.training.data import pack, row_messages
from ggstack.training.plan import make_plan


def body(**training) -> dict:
    data = {"dataset_id": "d", "batch_size": 1, "shuffle": True, "data_format": "instruct"}
    config = {"n_epochs": 2, "data_config": data, **training}
    return {"job_uuid": "job-1", "model": "m", "training_config": config, "hyperparam_search_config": {},
            "logger_config": {"log_dir": "x"}}


def test_plan_takes_the_defaults_and_fences_the_checkpoint_dir(tmp_path: Path) -> None:
    dirs = ModelDirs([tmp_path])
    plan = make_plan(body(), dirs)
    assert (plan.max_steps_per_epoch, plan.max_validation_steps, plan.optimizer) == (1, 1, "adamw")
    assert plan.checkpoint_dir == str(tmp_path / "finetuned" / "job-1")
    assert plan.logger_config == {"log_dir": "x"}
    assert make_plan({**body(), "checkpoint_dir": "mine"}, dirs).checkpoint_dir == str(tmp_path / "mine")
    with pytest.raises(InvalidValueError, match="checkpoint_dir"):
        make_plan({**body(), "checkpoint_dir": "../escape"}, dirs)


def test_warmup_is_linear_then_flat(tmp_path: Path) -> None:
    optimizer = {"optimizer_type": "sgd", "lr": 0.01, "weight_decay": 0.0, "num_warmup_steps": 3}
    plan = make_plan(body(optimizer_config=optimizer), ModelDirs([tmp_path]))
    assert [plan.lr_at(step) for step in range(5)] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01])


@pytest.mark.parametrize(("change", "field"), [
    ({"gradient_accumulation_steps": 4}, "gradient_accumulation_steps"),
    ({"efficiency_config": {"enable_activation_checkpointing": True}}, "enable_activation_checkpointing"),
    ({"n_epochs": 0}, "n_epochs"),
    ({"optimizer_config": {"optimizer_type": "adam", "lr": 0.0, "weight_decay": 0.0, "num_warmup_steps": 0}}, "lr"),
])
def test_what_the_trainer_cannot_do_is_refused_by_name(tmp_path: Path, change: dict, field: str) -> None:
    with pytest.raises(InvalidValueError, match=field):
        make_plan(body(**change), ModelDirs([tmp_path]))


def test_data_config_refusals(tmp_path: Path) -> None:
    for key, value in (("batch_size", 8), ("packed", False), ("train_on_input", False)):
        request = body()
        request["training_config"]["data_config"][key] = value
        with pytest.raises(InvalidValueError, match=key):
            make_plan(request, ModelDirs([tmp_path]))


def test_rows_become_chats() -> None:
    assert row_messages({"input": "q", "output": "a"}, "instruct", 0) == [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    dialog = '[{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "yo"}]'
    assert row_messages({"dialog": dialog}, "dialog", 0)[0] == {"role": "user", "content": "hi"}
    with pytest.raises(InvalidValueError, match="row 3 has none of the columns"):
        row_messages({"question": "q"}, "instruct", 3)
    with pytest.raises(InvalidValueError, match="role"):
        row_messages({"dialog": [{"role": "robot", "content": "x"}]}, "dialog", 0)


def test_pack_labels_every_token_once_and_wraps() -> None:
    windows = pack(list(range(10)), 4)
    assert windows == [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8], [8, 9, 0, 1, 2]]
    assert pack([7, 8], 4) == [[7, 8, 7, 8, 7]]
    with pytest.raises(InvalidValueError):
        pack([], 4)
