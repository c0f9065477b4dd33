"""The llama.cpp reranker: a cross-encoder GGUF that scores (query, document) pairs.

llama.cpp runs a cross-encoder as an encoder with rank pooling (LLAMA_POOLING_TYPE_RANK): the
pooled token (CLS for BERT) goes through the model's classification head (`cls`, `cls.output`
tensors), and `llama_get_embeddings_seq` gives that head's `n_cls_out` outputs per sequence.
As llama.cpp's own server does, the first output is the pair's relevance score.

A pair is put together the way llama.cpp's server does it (`format_prompt_rerank`), so a GGUF
scores the same here as there: the model's `tokenizer.chat_template.rerank` with `{query}` and
`{document}` filled in, if it has one; otherwise BOS, query, EOS, SEP, document, EOS, each
special token only where the vocabulary says it adds one (a BERT vocabulary: [CLS] q [SEP] d).
Like embeddings, pairs from concurrent requests share llama.cpp batches (`Coalescer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from ggstack.core.errors import ContextOverflowError, InvalidValueError
from ggstack.engines.coalesce import Coalescer
from ggstack.engines.llamacpp import (
    POOLING_TYPES,
    LlamaCppOptions,
    pooled_rows,
    start_encoder,
    trained_context,
)
from ggstack.engines.worker import DEFAULT_MAX_QUEUE, ModelWorker

#: GGUF key of the prompt template some rerankers (Qwen3-Reranker) carry; llama.cpp's server reads it.
RERANK_TEMPLATE_KEY = "tokenizer.chat_template.rerank"


class LlamaCppRerankEngine:
    """A cross-encoder GGUF behind one worker thread (`RerankEngine`)."""

    @classmethod
    async def load(cls, identifier: str, path: Path, *, options: Mapping[str, Any] | None = None,
                   context_length: int | None = None, max_queue: int = DEFAULT_MAX_QUEUE) -> LlamaCppRerankEngine:
        """Start the worker and load the model with rank pooling; `options` as for embedding models."""
        options = dict(options or {})
        pooling = str(options.pop("pooling", "rank")).lower()
        if pooling != "rank":
            raise InvalidValueError(f"a rerank model pools by rank (got pooling {pooling})", field="options")
        opts = LlamaCppOptions.from_spec(options, context_length=context_length, embedding=True,
                                         trained_context=await trained_context(path))
        opts = dataclasses.replace(opts, pooling_type=POOLING_TYPES["rank"])
        waiting = int(options.get("max_queue", max_queue))
        worker, llama = await start_encoder(identifier, path, opts, max_queue=waiting)
        return cls(identifier, worker, llama, max_waiting=waiting)

    def __init__(self, identifier: str, worker: ModelWorker[Any], llama: Any, *,
                 max_waiting: int = DEFAULT_MAX_QUEUE) -> None:
        import llama_cpp

        self.identifier = identifier
        self._worker = worker
        self._llama = llama
        self._batches: Coalescer[Any] = Coalescer(worker, _score_batch, max_waiting=max_waiting)
        # llama.cpp pads n_ctx up to a multiple of 256, but an encoder input must fit one batch
        self.context_length: int = min(llama.n_ctx(), llama.n_batch)
        model = llama._model
        self._template: str | None = llama.metadata.get(RERANK_TEMPLATE_KEY)
        eos = model.token_eos() if model.token_eos() >= 0 else model.token_sep()
        self._bos = [model.token_bos()] if model.add_bos_token() else []
        self._eos = [eos] if model.add_eos_token() and eos >= 0 else []
        self._sep = [model.token_sep()] if llama_cpp.llama_vocab_get_add_sep(model.vocab) else []

    def pair_tokens(self, query: str, document: str) -> list[int]:
        """The tokens llama.cpp's server would score for this pair (tokenising only reads the vocabulary)."""
        if self._template is not None:
            prompt = self._template.replace("{query}", query).replace("{document}", document)
            return self._llama.tokenize(prompt.encode("utf-8"), False, True)
        q = self._llama.tokenize(query.encode("utf-8"), False, False)
        d = self._llama.tokenize(document.encode("utf-8"), False, False)
        return [*self._bos, *q, *self._eos, *self._sep, *d, *self._eos]

    async def score(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        """One relevance score per document (higher is more relevant), and the tokens read in all."""
        if not documents:
            return [], 0
        pairs = await anyio.to_thread.run_sync(lambda: [self.pair_tokens(query, d) for d in documents])
        for i, tokens in enumerate(pairs):
            if len(tokens) > self.context_length:
                raise ContextOverflowError(
                    f"the query and item {i} together have {len(tokens)} tokens, more than this model's "
                    f"maximum context length of {self.context_length} tokens", tokens=len(tokens),
                    limit=self.context_length)
        scores = await self._batches.call(pairs)
        return [float(s) for s in scores], sum(len(t) for t in pairs)

    def close(self) -> None:
        """Stop the worker thread and free the model (blocking; call from a thread)."""
        self._worker.close()


def _score_batch(llama: Any, pairs: list[list[int]]) -> np.ndarray:
    """Worker thread: the first classifier output of each pair, as llama.cpp's server reads it."""
    import llama_cpp

    width = max(1, llama_cpp.llama_model_n_cls_out(llama._model.model))
    return pooled_rows(llama, pairs, width)[:, 0]
