"""How llama.cpp cuts one `llama_decode` batch into micro-batches, worked out in Python.

With one KV stream per sequence (`kv_unified=false`, what the chat scheduler's context uses)
llama.cpp 0.3.36 splits every batch with `llama_batch_allocr::split_equal(n_ubatch,
sequential=true)` (src/llama-batch.cpp): a micro-batch takes the sequences with consecutive
ids that a scan of the batch's unused tokens, in batch order, meets first, and the same number
of tokens from each, the fewest any of them has left. Every micro-batch is one more pass over
all the weights: on SmolLM2-135M with one thread a micro-batch costs about two tokens' worth of
time on top of its tokens (1 token 18.5 ms, 2 tokens 24.5, 8 tokens 61, ~6.5 ms per token
beyond; docs/benchmarks.md, "Continuous batching"), so the scheduler places a burst of prompts
on slots where they make few micro-batches.
"""

from __future__ import annotations

from collections.abc import Sequence


def split_equal(parts: Sequence[tuple[int, int]], n_ubatch: int) -> list[tuple[int, int]]:
    """(sequences, tokens per sequence) of each micro-batch llama.cpp makes of a batch of `parts`:
    (sequence id, tokens) in batch order, each sequence's tokens in one part, as the scheduler
    lays out its steps. (llama.cpp also stops adding sequences past n_ubatch of them; a context
    has far fewer.)"""
    left = [count for _, count in parts]
    out: list[tuple[int, int]] = []
    while True:
        chosen: list[int] = []  # indices of the parts in this micro-batch
        for index, (seq, _) in enumerate(parts):
            if left[index] and (not chosen or seq == parts[chosen[-1]][0] + 1):
                chosen.append(index)
        if not chosen:
            return out
        per_seq = min(min(left[index] for index in chosen), max(1, n_ubatch // len(chosen)))
        for index in chosen:
            left[index] -= per_seq
        out.append((len(chosen), per_seq))
