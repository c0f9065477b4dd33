"""Optional engine for legacy GGML files (gpt2, gptj, starcoder, ...) through ctransformers 0.2.27.

ctransformers is unmaintained and its loader can segfault on files it half-understands,
which would take the whole server down. So a file is first loaded once in a throwaway
subprocess; only if that exits cleanly is it loaded in-process. Grammars and JSON schemas
are not supported by ctransformers (UnsupportedError, 501). Install with
`pip install --no-deps ctransformers==0.2.27` (its py-cpuinfo/huggingface-hub dependencies
are not needed: the CPU variant is chosen here from /proc/cpuinfo).
"""

from __future__ import annotations

import codecs
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from ggstack.core.errors import InvalidValueError, UnsupportedError
from ggstack.engines.base import Finish, SamplingOptions, TokenEvent
from ggstack.engines.chat_template import ChatTemplate
from ggstack.engines.streaming import Channel, StopBuffer, StreamingChatEngine, log_softmax
from ggstack.engines.worker import DEFAULT_MAX_QUEUE, ModelWorker

log = logging.getLogger("ggstack.engines")

PROBE_TIMEOUT_S = 120
_PROBE = ("import sys\nfrom ctransformers.llm import LLM, Config\n"
          "LLM(sys.argv[1], sys.argv[2], config=Config(context_length=int(sys.argv[3])), lib=sys.argv[4])\n")


def cpu_library() -> str:
    """The ctransformers build variant this CPU can run (what py-cpuinfo would have told it)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text(errors="replace").split())
    except OSError:
        return "basic"
    if "avx2" in flags:
        return "avx2"
    return "avx" if {"avx", "f16c"} <= flags else "basic"


def ctransformers_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ctransformers") is not None


async def probe(path: Path, model_type: str, context_length: int, lib: str) -> None:
    """Load the file in a subprocess; a crash or failure there becomes InvalidValueError here."""
    try:
        with anyio.fail_after(PROBE_TIMEOUT_S):
            result = await anyio.run_process([sys.executable, "-c", _PROBE, str(path), model_type,
                                              str(context_length), lib], check=False)
    except TimeoutError:
        raise InvalidValueError(f"cannot load {path.name} with ctransformers: loading took over "
                                f"{PROBE_TIMEOUT_S}s", field="path") from None
    if result.returncode != 0:
        how = f"crashed (signal {-result.returncode})" if result.returncode < 0 else "failed"
        log.warning("ctransformers probe of %s %s: %s", path, how, result.stderr.decode(errors="replace")[-500:])
        raise InvalidValueError(f"cannot load {path.name} as a {model_type} model: the ctransformers loader {how}",
                                field="path")


class CTransformersChatEngine(StreamingChatEngine):
    """A legacy GGML model behind one worker thread (implements `ChatEngine`).

    Tokenising also runs on the worker: ctransformers makes no thread-safety promises.
    """

    @classmethod
    async def load(cls, identifier: str, path: Path, *, options: Mapping[str, Any] | None = None,
                   context_length: int | None = None, max_queue: int = DEFAULT_MAX_QUEUE
                   ) -> CTransformersChatEngine:
        if not ctransformers_available():
            raise UnsupportedError("the ctransformers engine is not installed "
                                   "(pip install --no-deps ctransformers==0.2.27)")
        options = dict(options or {})
        unknown = sorted(set(options) - {"model_type", "threads", "chat_template", "max_queue"})
        if unknown:
            raise InvalidValueError(f"unknown ctransformers option(s): {', '.join(unknown)}", field="options")
        model_type = str(options.get("model_type", "gpt2"))
        n_ctx, lib = int(context_length or 2048), cpu_library()
        await probe(path, model_type, n_ctx, lib)

        def factory() -> Any:
            from ctransformers.llm import LLM, Config

            # One thread by default: this old ggml spin-waits between threads, and on 2 cores
            # that cost 230 ms per token whenever anything else ran (measured: 1 thread, <1 ms).
            config = Config(context_length=n_ctx, threads=int(options.get("threads", 1)))
            return LLM(str(path), model_type, config=config, lib=lib)

        worker: ModelWorker[Any] = ModelWorker(identifier, factory, max_queue=int(options.get("max_queue", max_queue)))
        llm = await worker.start()
        return cls(identifier, worker, llm, options.get("chat_template"))

    def __init__(self, identifier: str, worker: ModelWorker[Any], llm: Any, chat_template: str | None) -> None:
        self.identifier = identifier
        self._worker = worker
        self._chat_template = ChatTemplate(identifier, chat_template)
        self.n_vocab: int = llm.vocab_size
        self.context_length: int = llm.context_length

    async def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return await self._worker.call(lambda llm: list(llm.tokenize(text, add_bos_token=None if add_bos else False)))

    async def detokenize(self, tokens: list[int]) -> str:
        self._check_ids(tokens, "tokens")
        if not tokens:
            return ""
        data = await self._worker.call(lambda llm: llm.detokenize(tokens, decode=False))
        return data.decode("utf-8", errors="replace")

    def render_chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
                    add_generation_prompt: bool = True) -> str:
        return self._chat_template.render(messages, tools=tools, add_generation_prompt=add_generation_prompt)

    async def _start(self, tokens: list[int], options: SamplingOptions, channel: Channel[TokenEvent | Finish]
                     ) -> None:
        if options.grammar is not None or options.json_schema is not None:
            raise UnsupportedError("the ctransformers engine cannot constrain output with a grammar or schema")
        if options.logit_bias:
            raise UnsupportedError("the ctransformers engine has no logit bias")
        job = self._worker.submit(lambda llm: _run_generation(llm, tokens, options, channel),
                                  cancelled=channel.cancelled)
        job.result.add_done_callback(lambda fut: channel.end(None if fut.cancelled() else fut.exception()))

    def close(self) -> None:
        self._worker.close()


def _run_generation(llm: Any, tokens: list[int], o: SamplingOptions, channel: Channel[TokenEvent | Finish]) -> None:
    """Worker thread: evaluate the prompt, then sample/evaluate one token at a time."""
    if channel.cancelled.is_set():
        return
    budget = llm.context_length - len(tokens)
    limit = min(o.max_tokens or budget, budget)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    held = StopBuffer(o.stop)
    llm._context.clear()  # no prefix reuse: ctransformers' reset() is deprecated and warns
    llm.eval(tokens)
    produced, reason, hit_stop = 0, "length", False
    while True:
        if channel.cancelled.is_set():
            return
        logits = _logits(llm) if (o.logprobs is not None or o.temperature == 0) else None
        if logits is not None and o.temperature == 0:
            token = int(np.argmax(logits))  # ctransformers divides by the temperature
        else:
            # ctransformers re-seeds its RNG on every call, so a fixed seed must advance per token
            seed = o.seed + produced if o.seed is not None else -1
            token = int(llm.sample(top_k=o.top_k, top_p=o.top_p, temperature=o.temperature,
                                   repetition_penalty=o.repeat_penalty, seed=seed))
        if llm.is_eos_token(token):
            reason = "stop"
            break
        produced += 1
        logprob, top = _logprobs(llm, logits, token, o.logprobs) if o.logprobs is not None else (None, None)
        text = decoder.decode(llm.detokenize([token], decode=False))
        released, stopped = held.push(TokenEvent(text, token, logprob, top))
        for event in released:
            if not channel.put(event):
                return
        if stopped:
            reason, hit_stop = "stop", True
            break
        if produced >= limit:
            break
        llm.eval([token])
    tail = decoder.decode(b"", final=True)
    for event in held.flush() + ([TokenEvent(tail, -1)] if tail and not hit_stop else []):
        if not channel.put(event):
            return
    channel.put(Finish(reason, len(tokens), produced))  # type: ignore[arg-type]


def _logits(llm: Any) -> np.ndarray:
    size = llm.ctransformers_llm_logits_size()
    return np.ctypeslib.as_array(llm.ctransformers_llm_logits_data(), shape=(size,)).astype(np.float64)


def _logprobs(llm: Any, logits: np.ndarray | None, token: int, top_n: int) -> tuple[float, list[tuple[str, float]]]:
    assert logits is not None
    logprobs = log_softmax(logits)
    best = np.argsort(-logprobs)[:top_n]
    top = [(llm.detokenize([int(t)], decode=False).decode("utf-8", errors="replace"), float(logprobs[t]))
           for t in best]
    return float(logprobs[token]), top
