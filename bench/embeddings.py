"""Embedding throughput through the server's /v1/embeddings, beside sentence-transformers on CPU torch.

Both run all-MiniLM-L6-v2 (the bundled one) on the same machine in the same run, one after
the other, so neither competes with the other for the cores. Two workloads:

- 2,000 short sentences (8-14 words), sent as lists of `--batch` inputs per request;
- 256 chunks of about 300 tokens, sent as lists of `--chunk-batch` inputs per request.

The server side is end to end: an HTTP request per list, JSON in and out, base64 (what the
openai SDK asks for) and float, decoded by the client. sentence-transformers runs in this
process with its defaults (batch 32, normalised output), at torch's thread count and at one
thread (on a busy machine torch's spinning threads lose badly); the better row is the bar.
Its 256-token truncation is raised to the 512 the server embeds, so both see the same text.

torch is not a dependency of ggstack. If sentence-transformers is missing, this script
installs `torch==2.13.0` (a local CPU wheel here) and then sentence-transformers pinned to
that torch into the running interpreter, unless `--no-install`; if that fails it reports the
server alone.

Run: `python bench/embeddings.py [--threads N] [--weights f16] [--runs 3] [--no-install]`.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import importlib.util
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import numpy as np

from bench.servers import serve_ggstack, stop

TORCH_PIN = "torch==2.13.0"
SHORT_COUNT = 2000
CHUNK_COUNT = 256
CHUNK_WORDS = 275  # about 300 MiniLM WordPiece tokens of this vocabulary (measured and printed)
MODEL = "all-minilm-l6-v2"
ST_LABEL = "sentence-transformers (CPU torch)"

SUBJECTS = ["The cat", "A young engineer", "My neighbour", "The committee", "An old fisherman",
            "The orchestra", "Our new manager", "A small bird", "The city council", "Every student",
            "The robot", "Her brother"]
VERBS = ["quietly repaired", "carefully studied", "happily painted", "suddenly noticed", "slowly opened",
         "proudly presented", "secretly admired", "loudly criticised", "patiently explained",
         "finally sold"]
OBJECTS = ["the broken bicycle", "a detailed report on rainfall", "the blue wooden door",
           "an unusual old map", "the quarterly budget", "a bowl of ripe cherries", "the harbour at dawn",
           "three chapters of the novel", "the new train timetable", "a letter from the mayor",
           "the garden fence", "an idea for the festival"]
ENDINGS = ["before lunch.", "in the rain.", "after a long meeting.", "with great care.",
           "for the first time.", "near the station.", "without telling anyone.", "on Sunday morning.",
           "at the market.", "yesterday."]
WORD_TEXT = ("time year people way day man thing woman life child world school state family student group "
             "country problem hand part place case week company system program question work government "
             "number night point home water room mother area money story fact month lot right study book "
             "eye job word business issue side kind head house service friend father power hour game line "
             "end member law car city community name president team minute idea kid body information back "
             "parent face others level office door health person art war history party result change "
             "morning reason research girl guy moment air teacher force education foot boy age policy "
             "music market sense nation plan college interest death experience effect use class control "
             "care field development role effort rate heart drug show leader light voice wife police mind "
             "price report decision son view relationship town road arm difference value building action "
             "model season society tax director position player record paper space ground form event "
             "official matter center couple site project activity star table need court oil situation cost "
             "industry figure street image phone data picture practice piece land product doctor wall "
             "patient worker news test movie north love support technology step baby computer type "
             "attention film tree source organization hair window evidence population site analysis river "
             "theory energy method weather garden bridge harbour valley engine")
WORDS = WORD_TEXT.split()


def short_sentences(n: int, rng: random.Random) -> list[str]:
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ENDINGS)}"
            for _ in range(n)]


def chunks(n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(CHUNK_WORDS)]
        sentences = [" ".join(words[i:i + 13]).capitalize() + "." for i in range(0, len(words), 13)]
        out.append(" ".join(sentences))
    return out


# -- the server ----------------------------------------------------------------------------------

def minilm_config(data_dir: Path, threads: int | None, weights: str) -> dict:
    """The bundled MiniLM spec as the defaults register it, with thread options or F16 weights if asked."""
    from ggstack.engines.registry import default_model_specs

    spec = next(s for s in default_model_specs(data_dir) if s.identifier == MODEL)
    model = spec.model_dump(mode="json")
    if threads:
        model["options"] = {**model["options"], "n_threads": threads, "n_threads_batch": threads}
    if weights == "f16":
        model["path"] = str(to_f16(spec.path, data_dir / "minilm-f16.gguf"))
    return {"default_models": False, "models": [model]}


def to_f16(source: Path, target: Path) -> Path:
    """The same GGUF with its matrices in F16, written by llama.cpp's own quantizer."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"could not write {target}")
    return target


def server_embed(client: httpx.Client, texts: Sequence[str], batch: int,
                 encoding: str) -> tuple[np.ndarray, int]:
    """Every text through /v1/embeddings in lists of `batch`; the vectors (decoded) and the tokens used."""
    rows, tokens = [], 0
    for start in range(0, len(texts), batch):
        body = {"model": MODEL, "input": list(texts[start:start + batch]), "encoding_format": encoding}
        response = client.post("/v1/embeddings", json=body)
        response.raise_for_status()
        body = response.json()
        tokens += body["usage"]["total_tokens"]
        for item in body["data"]:
            value = item["embedding"]
            rows.append(np.frombuffer(base64.b64decode(value), dtype="<f4") if encoding == "base64"
                        else np.asarray(value, dtype=np.float32))
    return np.vstack(rows), tokens


# -- sentence-transformers -----------------------------------------------------------------------

def ensure_sentence_transformers(install: bool) -> str | None:
    """None when importable (after installing it if allowed), else why not."""
    if importlib.util.find_spec("sentence_transformers") and importlib.util.find_spec("torch"):
        return None
    if not install:
        return "sentence-transformers is not installed (--no-install)"
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    print(f"installing {TORCH_PIN} and sentence-transformers into {sys.prefix} for the comparison",
          flush=True)
    for args in ([TORCH_PIN], ["sentence-transformers", TORCH_PIN]):
        if subprocess.run(pip + args, check=False).returncode != 0:
            return f"pip install {' '.join(args)} failed"
    importlib.invalidate_caches()
    return None


def st_encoder(model_dir: Path) -> Callable[[Sequence[str], int], np.ndarray]:
    """sentence-transformers' encode at a given torch thread count.

    Its config truncates at 256 tokens; the server embeds up to the model's 512 positions,
    so the limit is raised to 512 and both embed exactly the same text.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    model.max_seq_length = 512
    print(f"sentence-transformers on torch {torch.__version__} (default {torch.get_num_threads()} threads)",
          flush=True)

    def encode(texts: Sequence[str], threads: int) -> np.ndarray:
        torch.set_num_threads(threads)
        return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)

    return encode


# -- measuring -----------------------------------------------------------------------------------

class Best:
    """The fastest of several timed runs per (method, workload), and that run's vectors.

    Methods are measured interleaved, run by run, so a burst of load from other processes
    on the machine hits each of them rather than whichever happened to run then.
    """

    def __init__(self) -> None:
        self.rates: dict[tuple[str, str], float] = {}
        self.vectors: dict[tuple[str, str], np.ndarray] = {}

    def time(self, label: str, workload: str, count: int, run: Callable[[], np.ndarray]) -> None:
        started = time.perf_counter()
        vectors = run()
        rate = count / (time.perf_counter() - started)
        if rate > self.rates.get((label, workload), 0.0):
            self.rates[(label, workload)], self.vectors[(label, workload)] = rate, vectors


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine between the two implementations' vectors for the same input."""
    return float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def measure(args: argparse.Namespace, workloads: dict[str, list[str]], batches: dict[str, int],
            st_problem: str | None) -> tuple[Best, dict[str, int]]:
    """Start the server, then time every method on every workload, interleaved."""
    tokens: dict[str, int] = {}
    best = Best()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        # served without response validation (that is for tests), as `ggstack serve` defaults to
        process, url = serve_ggstack(minilm_config(data_dir, args.threads, args.weights), data_dir)
        try:
            with httpx.Client(base_url=url, timeout=600) as client:

                def via_server(encoding: str) -> Callable[[str, Sequence[str]], np.ndarray]:
                    def run(name: str, texts: Sequence[str]) -> np.ndarray:
                        matrix, tokens[name] = server_embed(client, texts, batches[name], encoding)
                        return matrix
                    return run

                methods = {f"ggstack /v1/embeddings ({e})": via_server(e) for e in ("base64", "float")}
                if st_problem is None:
                    import torch

                    from ggstack.engines.convert import find_minilm_dir

                    encode = st_encoder(find_minilm_dir())
                    # torch's default (one thread per core) and one thread: on a busy machine
                    # torch's spinning threads lose badly, so both are shown and the best counts.
                    for n in sorted({torch.get_num_threads(), 1}, reverse=True):
                        label = f"{ST_LABEL}, {n} thread{'s' if n > 1 else ''}"
                        methods[label] = lambda name, texts, n=n: encode(texts, n)
                for method in methods.values():  # warm-up: load the model, page in the weights
                    for name, texts in workloads.items():
                        method(name, texts[:batches[name]])
                for _ in range(args.runs):
                    for name, texts in workloads.items():
                        for label, method in methods.items():
                            best.time(label, name, len(texts), lambda m=method, n=name, t=texts: m(n, t))
        finally:
            stop(process)
    return best, tokens


def report(best: Best, workloads: dict[str, list[str]], batches: dict[str, int], tokens: dict[str, int],
           st_problem: str | None) -> None:
    rates = best.rates
    for name, texts in workloads.items():
        print(f"{name}: {len(texts)} inputs, {tokens[name] / len(texts):.0f} tokens each on average, "
              f"{batches[name]} per request")
    labels = sorted({label for label, _ in rates}, key=lambda s: (s.startswith(ST_LABEL), s))
    print(f"\n| {'method':<44} | short sentences/s | ~300-token chunks/s |")
    print(f"| {'-' * 44} | ----------------: | ------------------: |")
    for label in labels:
        print(f"| {label:<44} | {rates[(label, 'short')]:>17.1f} | {rates[(label, 'chunks')]:>19.1f} |")
    if st_problem is not None:
        print(f"sentence-transformers not measured: {st_problem}")
        return
    st_labels = [label for label in labels if label.startswith(ST_LABEL)]
    for label in labels:
        if label in st_labels:
            continue
        ratios = ", ".join(f"{name} x{rates[(label, name)] / max(rates[(st, name)] for st in st_labels):.2f}"
                           for name in workloads)
        agree = min(agreement(best.vectors[(label, n)], best.vectors[(st_labels[0], n)]) for n in workloads)
        print(f"{label} vs the faster sentence-transformers row: {ratios}; "
              f"min cosine to its vectors {agree:.5f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="short sentences per request")
    parser.add_argument("--chunk-batch", type=int, default=32, help="300-token chunks per request")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (best is kept)")
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads for the model (default: the engine's own default)")
    parser.add_argument("--weights", choices=("converted", "f16"), default="converted",
                        help="the bundled GGUF as our converter writes it (F16 layer matrices) or "
                             "requantised to F16 throughout by llama.cpp")
    parser.add_argument("--no-install", action="store_true", help="never pip-install sentence-transformers")
    args = parser.parse_args()

    rng = random.Random(20240607)
    workloads = {"short": short_sentences(SHORT_COUNT, rng), "chunks": chunks(CHUNK_COUNT, rng)}
    batches = {"short": args.batch, "chunks": args.chunk_batch}
    st_problem = ensure_sentence_transformers(not args.no_install)
    load_before = os.getloadavg()[0]
    best, tokens = measure(args, workloads, batches, st_problem)
    print(f"\n{machine()}, {datetime.date.today().isoformat()}, "
          f"llama.cpp threads: {args.threads or 'engine default'}, weights {args.weights}, "
          f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'PASSIVE (the ggstack default)')}, "
          f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after, best of {args.runs} runs")
    report(best, workloads, batches, tokens, st_problem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
