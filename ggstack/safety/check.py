"""Running a shield over a conversation: the one entry point for run-shield, moderations and agents.

Agents' input/output shields call `check_messages(registry, models, shield_id, [(role, text), ...])`
and treat `Verdict.unsafe` as a violation (its `user_message` is what to tell the user).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.engines.base import ChatEngine, SamplingOptions
from ggstack.inference.generation import generate
from ggstack.inference.messages import text_content
from ggstack.safety.llama_guard import (
    VERDICT_TOKENS,
    Category,
    categories,
    grammar,
    llama3_prompt,
    read_verdict,
    task_text,
)
from ggstack.safety.shields import ShieldRegistry

#: Top alternatives read per verdict token (the engine's maximum): the unsafe/safe odds come from them.
TOP_LOGPROBS = 20


@dataclass(frozen=True)
class Verdict:
    """A shield's judgement of the last turn: violated categories and probabilities per category."""

    shield_id: str
    model: str
    unsafe: bool
    violated: tuple[Category, ...]
    unsafe_probability: float
    scores: Mapping[str, float]  # category name -> probability the verdict names it
    raw: str

    @property
    def user_message(self) -> str:
        return "I can't answer that. Can I help with something else?"

    def violation(self) -> dict[str, Any] | None:
        """The spec's `SafetyViolation` for an unsafe verdict (run-shield, agents' shield_call steps)."""
        if not self.unsafe:
            return None
        return {"violation_level": "error", "user_message": self.user_message,
                "metadata": {"violation_type": ",".join(c.code for c in self.violated)}}


async def check_messages(registry: ShieldRegistry, models: Any, shield_id: str,
                         conversation: Sequence[tuple[str, str]], *, field: str = "shield_id") -> Verdict:
    """Judge the last of `(role, text)` turns with the shield's guard model."""
    shield = await registry.for_use(shield_id, field=field)
    if not conversation:
        raise InvalidValueError("there are no messages to check", field="messages")
    cats = categories(shield.get("params") or {})
    engine = await models.chat(shield["provider_resource_id"])
    prompt = await _prompt(engine, task_text(conversation, cats))
    options = SamplingOptions(max_tokens=VERDICT_TOKENS, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
                              logprobs=TOP_LOGPROBS, grammar=grammar(cats))
    choice = (await generate(engine, [prompt], options)).choices[0]
    reading = read_verdict(choice.text, choice.logprobs or [], cats)
    by_code = {c.code: c for c in cats}
    scores = {c.name: (reading.code_probability.get(c.code, 0.0) if reading.unsafe else reading.unsafe_probability)
              for c in cats}
    return Verdict(shield["identifier"], shield["provider_resource_id"], reading.unsafe,
                   tuple(by_code[c] for c in reading.codes), reading.unsafe_probability, scores, choice.text)


async def check_text(registry: ShieldRegistry, models: Any, shield_id: str, text: str, *,
                     field: str = "model") -> Verdict:
    """Judge one user text (moderations)."""
    return await check_messages(registry, models, shield_id, [("user", text)], field=field)


async def _prompt(engine: ChatEngine, task: str) -> str:
    """Llama Guard 3's own turn format when the vocabulary has its header tokens, else the model's chat template."""
    if len(await engine.tokenize("<|start_header_id|>", add_bos=False, special=True)) == 1:
        return llama3_prompt(task)
    return engine.render_chat([{"role": "user", "content": task}], add_generation_prompt=True)


def conversation_of(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(role, text) turns from Llama Stack messages: text content of every role and part form; tool
    results and system turns are context the guard reads as user-side text."""
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        role = "assistant" if message.get("role") == "assistant" else "user"
        text = _content_text(message.get("content"), f"messages[{i}].content")
        turns.append((role, text))
    return turns


def _content_text(content: Any, param: str) -> str:
    """Llama Stack content: a string, one item or a list of items (`text` and `image` parts)."""
    if isinstance(content, Mapping):
        content = [content]
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, str) or (isinstance(p, Mapping) and p.get("type") != "image")]
        if len(parts) != len(content):
            raise InvalidValueError(f"{param} has an image part; the guard models here read text only", field=param)
        content = [{"type": "text", "text": p} if isinstance(p, str) else p for p in parts]
    return text_content(content, param=param)
