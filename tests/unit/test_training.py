"""Fine-tuning pieces that need no model: request checks, row rendering, packing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggstack.core.errors import InvalidValueError
from ggstack.engines.admission import ModelDirs
from ggstack.engines.chat_template import ChatTemplate
from ggstack.training.data import answer_pieces, make_windows, pack, row_messages
from ggstack.training.plan import make_plan
from tests.fixtures.gguf_builder import CHATML_TEMPLATE


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


def test_train_on_input_defaults_to_false_as_the_spec_says(tmp_path: Path) -> None:
    assert make_plan(body(), ModelDirs([tmp_path])).train_on_input is False
    request = body()
    request["training_config"]["data_config"]["train_on_input"] = True
    assert make_plan(request, ModelDirs([tmp_path])).train_on_input is True


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
    for key, value in (("batch_size", 8), ("packed", False)):
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


class CharEngine:
    """A real chat template, and one token per character (so token flags read as text)."""

    def __init__(self, template: str = CHATML_TEMPLATE) -> None:
        self.template = ChatTemplate("m", template)

    def render_chat(self, messages, *, tools=None, add_generation_prompt=True) -> str:
        return self.template.render(messages, add_generation_prompt=add_generation_prompt)

    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return [ord(c) for c in text]


DIALOG = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "France?"},
          {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "Italy?"},
          {"role": "assistant", "content": "Rome"}]


def test_answer_pieces_are_each_assistant_turn_with_its_end_of_turn() -> None:
    engine = CharEngine()
    pieces = answer_pieces(engine, DIALOG, 0)
    assert "".join(text for text, _ in pieces) == engine.render_chat(DIALOG, add_generation_prompt=False)
    assert [text for text, answer in pieces if answer] == ["Paris<|im_end|>\n", "Rome<|im_end|>\n"]
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nFrance?<|im_end|>\n<|im_start|>assistant\n"
    assert pieces[0] == (prompt, False)


def test_an_opening_assistant_turn_keeps_the_template_header_as_prompt() -> None:
    pieces = answer_pieces(CharEngine(), [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "x"}], 0)
    assert pieces[:2] == [("<|im_start|>assistant\n", False), ("Hi<|im_end|>\n", True)]


def test_a_template_that_rewrites_earlier_turns_is_refused_by_name() -> None:
    last_differs = "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}|{% endfor %}"
    with pytest.raises(InvalidValueError, match="row 4.*train_on_input true"):
        answer_pieces(CharEngine(last_differs), DIALOG, 4)


@pytest.mark.anyio
async def test_windows_flag_answer_labels_and_drop_windows_without_one() -> None:
    rows = [{"dialog": DIALOG}, {"dialog": [{"role": "user", "content": "x" * 40}]}]
    windows = await make_windows(CharEngine(), rows, "dialog", 16, train_on_input=False)
    text = "".join(chr(t) for w in windows for t, a in zip(w.tokens[1:], w.answer, strict=True) if a)
    assert text == "Paris<|im_end|>\nRome<|im_end|>\n"  # each answer label once, nothing else
    everything = await make_windows(CharEngine(), rows, "dialog", 16, train_on_input=True)
    assert len(windows) < len(everything) and all(w.answer is None for w in everything)
    with pytest.raises(InvalidValueError, match="no answer"):
        await make_windows(CharEngine(), rows[1:], "dialog", 16, train_on_input=False)
