"""Vector-store throughput and latency, straight on the stores (no HTTP, both Chroma modes) and over HTTP.

- Ingestion: 1 MB of English-like text through the real pipeline (word windows, the
  bundled all-MiniLM-L6-v2, Chroma upserts), "auto" chunking; chunks/s and MB/min.
- Search: p50/p95 of vector, keyword and hybrid search at 10k and 100k chunks, query
  embedding included; keyword search reads the SQL keyword index (ggstack.stores.keywords)
  in a SQLite file, as the server does. Those chunks carry random unit vectors, not MiniLM ones: embedding
  100k chunks would take hours on a small CPU and does not change what a query costs.

Run alone: `python bench/vector_stores.py [--mb 1] [--sizes 10000,100000] [--modes embedded,server]`,
or on a kept store: `--store-dir DIR --sizes 100000 --mb 0 [--grow 10000]`.
Prints one table; copy it into docs/benchmarks.md with the machine and date it prints.

With `--store-dir` it first measures what a user meets after a server (re)start: `ggstack serve`
on a copy of the kept store (the keyword index as its metadata database, with the store's and
its files' records added), the copy's files evicted from the OS page cache before each start
(as after a reboot; `--no-evict` keeps them), and 40 searches per mode over HTTP from the moment
/v1/health answers, none skipped, in three starts: warm-up off (`search_warmup_stores: 0`, what
the server did before it had one), warm-up on with the queries at once (racing it), and warm-up
on after waiting for it (until `/metrics` says `ggstack_search_warmup_running 0`, at most
WARMUP_WAIT_S; the wait is printed), with `--steady-queries` (200) per mode in that last start:
its p95 is the one the targets name (vector <= 30 ms, keyword and hybrid <= 50 over HTTP). The server's RSS is printed at readiness, after the wait,
and after the searches.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from bench.servers import free_port, launch, serve_ggstack, stop
from ggstack.core.ids import now
from ggstack.engines.registry import ModelRegistry, default_model_specs
from ggstack.ingest.chunking import DEFAULT_CHUNK_OVERLAP_TOKENS, DEFAULT_MAX_CHUNK_SIZE_TOKENS
from ggstack.ingest.pipeline import chunk_for, embed_texts, index_file
from ggstack.ingest.records import VECTOR_STORE, VECTOR_STORE_FILE
from ggstack.stores.base import Chunk
from ggstack.stores.chroma import ChromaVectorStore
from ggstack.stores.keywords import KeywordIndex
from ggstack.stores.sql import SqlMetadataStore

WORDS = (
    "time", "person", "year", "way", "day", "thing", "man", "world", "life", "hand", "part", "child", "eye",
    "woman", "place", "work", "week", "case", "point", "government", "company", "number", "group",
    "problem", "fact", "river", "mountain", "garden", "kitchen", "library", "station", "market", "engine",
    "storm", "winter", "summer", "harbor", "forest", "desert", "island", "bridge", "castle", "window",
    "letter", "music", "story", "doctor", "teacher", "farmer", "sailor", "pilot", "painter", "baker",
    "hunter", "student", "soldier", "animal", "bird", "fish", "horse", "apple", "bread", "cheese", "water",
    "coffee", "paper", "stone", "metal", "glass", "wood", "silver", "golden", "quiet", "rapid", "bright",
    "ancient", "modern", "simple", "careful", "gentle", "heavy", "narrow", "distant", "early", "late",
    "build", "carry", "follow", "measure", "remember", "explain", "discover", "protect", "prepare",
    "travel", "gather", "repair", "divide", "imagine",
)
QUERIES = 40
#: Searches per mode over HTTP once the warm-up is done: the p95 the targets are judged on, over
#: enough queries that it is not the 2nd-worst of 40.
STEADY_QUERIES = 200
WARMUP = 3
UPSERT_BATCH = 2000
#: `fill` gives each file this many chunks.
CHUNKS_PER_FILE = 20
#: Longest wait for a server's search warm-up to finish.
WARMUP_WAIT_S = 300.0
SEARCH_MODES = ("vector", "keyword", "hybrid")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}"


def english(rng: random.Random, n_bytes: int) -> str:
    sentences, size = [], 0
    while size < n_bytes:
        words = rng.choices(WORDS, k=rng.randint(8, 20))
        sentence = " ".join(words).capitalize() + "."
        sentences.append(sentence)
        size += len(sentence) + 1
    return "\n".join(" ".join(sentences[i:i + 6]) for i in range(0, len(sentences), 6))


def varied(rng: random.Random, n_bytes: int) -> str:
    """Text with a realistic vocabulary size (tens of thousands of distinct words), where
    counting each distinct word's tokens costs what it would on real documents."""
    syllables = ["ka", "lo", "mi", "ter", "ran", "dus", "pe", "shi", "vo", "gal", "nor", "ex", "qui", "bra"]
    vocabulary = list(WORDS) + ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(40000)]
    words, size = [], 0
    while size < n_bytes:
        word = rng.choice(vocabulary)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def chroma_server(root: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    chroma = Path(sys.executable).parent / "chroma"
    process = launch([str(chroma), "run", "--path", str(root / "chroma-server"), "--host", "127.0.0.1",
                      "--port", str(port)], root / "chroma.log", f"{url}/api/v2/heartbeat")
    try:
        yield url
    finally:
        stop(process)


async def ingest(vectors: ChromaVectorStore, engine, text: str) -> dict[str, float]:
    await vectors.create("bench-ingest", dimension=engine.dimension)
    started = time.perf_counter()
    pieces = await chunk_for(engine, text, DEFAULT_MAX_CHUNK_SIZE_TOKENS, DEFAULT_CHUNK_OVERLAP_TOKENS)
    chunking = time.perf_counter() - started
    started = time.perf_counter()
    indexed = await index_file(data=text.encode(), content_type="text/plain", filename="bench.txt", engine=engine,
                               vectors=vectors, store_id="bench-ingest", file_id="file-bench", attributes={},
                               max_chunk_size_tokens=DEFAULT_MAX_CHUNK_SIZE_TOKENS,
                               chunk_overlap_tokens=DEFAULT_CHUNK_OVERLAP_TOKENS)
    elapsed = time.perf_counter() - started
    assert indexed.chunks == len(pieces)
    await vectors.drop("bench-ingest")
    return {"chunks": indexed.chunks, "seconds": elapsed, "chunking_seconds": chunking,
            "mb_per_min": len(text.encode()) / 1e6 / elapsed * 60}


async def fill(vectors: ChromaVectorStore, store_id: str, rng: random.Random, start: int, stop: int,
               dimension: int) -> float:
    began = time.perf_counter()
    np_rng = np.random.default_rng(start)
    for first in range(start, stop, UPSERT_BATCH):
        count = min(UPSERT_BATCH, stop - first)
        matrix = np_rng.standard_normal((count, dimension))
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        chunks = [Chunk(file_id=f"file-{(first + i) // CHUNKS_PER_FILE}", index=(first + i) % CHUNKS_PER_FILE,
                        text=" ".join(rng.choices(WORDS, k=60)), embedding=matrix[i].tolist(),
                        attributes={"group": (first + i) % 10})
                  for i in range(count)]
        await vectors.upsert_chunks(store_id, chunks)
    return time.perf_counter() - began


async def latencies(vectors: ChromaVectorStore, engine, store_id: str, rng: random.Random) -> dict[str, list[float]]:
    queries = [" ".join(rng.choices(WORDS, k=6)) for _ in range(QUERIES + WARMUP)]

    async def vector(q: str) -> None:
        [embedding] = await embed_texts(engine, [q])
        await vectors.query(store_id, embedding, k=10)

    async def keyword(q: str) -> None:
        await vectors.keyword(store_id, q, k=10)

    async def hybrid(q: str) -> None:
        [embedding] = await embed_texts(engine, [q])
        await vectors.hybrid(store_id, embedding, q, k=10)

    out: dict[str, list[float]] = {}
    for name, run in (("vector", vector), ("keyword", keyword), ("hybrid", hybrid)):
        samples = []
        for i, q in enumerate(queries):
            started = time.perf_counter()
            await run(q)
            if i >= WARMUP:
                samples.append((time.perf_counter() - started) * 1000)
        out[name] = samples
    return out


async def run_mode(mode: str, vectors: ChromaVectorStore, engine, mb: float, sizes: list[int]) -> list[str]:
    rng = random.Random(7)
    rows = []
    if mb > 0:
        result = await ingest(vectors, engine, english(rng, int(mb * 1_000_000)))
        rows.append(f"| {mode} | ingest {mb:g} MB (auto: {result['chunks']:.0f} chunks) | "
                    f"{result['chunks'] / result['seconds']:.2f} chunks/s, {result['mb_per_min']:.3f} MB/min "
                    f"({result['seconds']:.0f} s; chunking alone {result['chunking_seconds']:.1f} s) |")
        print(rows[-1], flush=True)
    rows += await search_rows(mode, vectors, engine, sizes, keep=False)
    return rows


async def search_rows(mode: str, vectors: ChromaVectorStore, engine, sizes: list[int], *, keep: bool) -> list[str]:
    """Fill one store up to each size in turn and time searches at each. With `keep` the store
    stays for the next run (--store-dir), which then only adds what is missing: building
    100k chunks takes minutes, and a rerun of the searches need not pay them again."""
    rng, rows = random.Random(7), []
    store_id = f"bench-search-{mode}"
    await vectors.create(store_id, dimension=engine.dimension)
    try:
        for size in sizes:
            present = await vectors.count(store_id)
            if present < size:
                build = f"adding {size - present:,} chunks took " \
                        f"{await fill(vectors, store_id, rng, present, size, engine.dimension):.0f} s"
            else:
                build = "store kept from an earlier run"
            assert await vectors.count(store_id) >= size
            samples = await latencies(vectors, engine, store_id, random.Random(size))
            parts = ", ".join(f"{name} {statistics.median(s):.0f}/{percentile(s, 0.95):.0f}"
                              for name, s in samples.items())
            rows.append(f"| {mode} | search at {size:,} chunks, p50/p95 ms | {parts} ({build}) |")
            print(rows[-1], flush=True)
    finally:
        if not keep:
            await vectors.drop(store_id)
    return rows


async def chunking(engine, mb: float) -> str:
    text = varied(random.Random(11), int(mb * 1_000_000))
    started = time.perf_counter()
    pieces = await chunk_for(engine, text, DEFAULT_MAX_CHUNK_SIZE_TOKENS, DEFAULT_CHUNK_OVERLAP_TOKENS)
    elapsed = time.perf_counter() - started
    distinct = len(set(text.split()))
    row = (f"| - | chunk {mb:g} MB, {distinct:,} distinct words, no embedding | {elapsed:.1f} s "
           f"({len(pieces)} chunks) |")
    print(row, flush=True)
    return row


async def main_async(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    print(f"machine: {machine()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry = ModelRegistry()
        spec = next(s for s in default_model_specs(root) if s.model_type == "embedding")
        registry.register(spec)
        engine = await registry.embedder(spec.identifier)
        print(f"model: {spec.identifier} ({engine.dimension}-d, context {engine.context_length})")
        rows = ["| mode | measure | result |", "| --- | --- | --- |"]
        restart_rows: list[str] = []
        try:
            if args.mb > 0:
                rows.append(await chunking(engine, args.mb))
            if args.store_dir is not None:
                if args.restarts:
                    restart_rows = await restarts(args.store_dir, spec.identifier, engine.dimension,
                                                  evict=args.evict, steady=args.steady_queries)
                rows += await kept_store(args.store_dir, engine, sizes, args.grow)
                modes = []
            for mode in modes:
                # The keyword index sits in a SQLite file, as beside the server's metadata.
                keywords = KeywordIndex.open(f"sqlite:///{root / f'keywords-{mode}.db'}")
                try:
                    if mode == "embedded":
                        vectors = ChromaVectorStore.embedded(root / "chroma-embedded", keywords)
                        try:
                            rows += await run_mode(mode, vectors, engine, args.mb, sizes)
                        finally:
                            vectors.close()
                    else:
                        with chroma_server(root) as url:
                            vectors = ChromaVectorStore.server(url, keywords)
                            try:
                                rows += await run_mode(mode, vectors, engine, args.mb, sizes)
                            finally:
                                vectors.close()
                finally:
                    keywords.close()
        finally:
            await registry.close()
    print("\n".join(restart_rows + ([""] if restart_rows else []) + rows))
    return 0


async def kept_store(store_dir: Path, engine, sizes: list[int], grow: int) -> list[str]:
    """Searches at the largest size on an embedded store that outlives the run (filled the first
    time); then, with `grow`, the time to add that many chunks to a copy of it."""
    store_dir.mkdir(parents=True, exist_ok=True)
    keywords = KeywordIndex.open(f"sqlite:///{store_dir / 'keywords.db'}")
    vectors = ChromaVectorStore.embedded(store_dir / "chroma", keywords)
    try:
        rows = await search_rows("embedded", vectors, engine, [max(sizes)], keep=True)
    finally:
        vectors.close()
        keywords.close()
    if grow > 0:
        rows.append(await grown_copy(store_dir, grow, engine.dimension))
    return rows


async def grown_copy(store_dir: Path, grow: int, dimension: int) -> str:
    """Add `grow` chunks to a throwaway copy of the kept store, as `fill` built it: what ingestion
    costs once the store is large, and the keyword index's part of it (CPU time in its writes)."""
    with tempfile.TemporaryDirectory(dir=store_dir.parent) as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(store_dir, copy)
        keywords = KeywordIndex.open(f"sqlite:///{copy / 'keywords.db'}")
        index_cpu = [0.0]
        upsert = keywords.upsert

        def timed_upsert(*args, **kwargs):
            started = time.thread_time()  # each write runs whole in one worker thread
            try:
                return upsert(*args, **kwargs)
            finally:
                index_cpu[0] += time.thread_time() - started

        keywords.upsert = timed_upsert  # type: ignore[method-assign]
        vectors = ChromaVectorStore.embedded(copy / "chroma", keywords)
        try:
            store_id = "bench-search-embedded"
            present = await vectors.count(store_id)
            seconds = await fill(vectors, store_id, random.Random(present), present, present + grow, dimension)
        finally:
            vectors.close()
            keywords.close()
    return (f"| embedded | add {grow:,} chunks to the {present:,}-chunk store (Chroma upsert + keyword index) | "
            f"{seconds:.0f} s, {grow / seconds:.0f} chunks/s; keyword index {index_cpu[0]:.1f} s CPU "
            f"({index_cpu[0] / grow * 1e6:.0f} us per chunk) |")


STORE_ID = "bench-search-embedded"


async def restarts(store_dir: Path, model: str, dimension: int, *, evict: bool, steady: int) -> list[str]:
    """Searches over HTTP right after a server start on a copy of the kept store: warm-up off, on
    (queries at once), on (after waiting for it; `steady` queries per mode, so its p95 rests on
    more than the 2nd-worst of 40). The copy is deleted afterwards."""
    rows = ["| server start | mode | first query ms | queries | p50/p95/p99/max ms (all, none skipped) |",
            "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(dir=store_dir.parent) as tmp:
        data = Path(tmp) / "server"
        await server_copy(store_dir, data, model, dimension)
        for label, stores, wait, count in (("warm-up off", 0, False, QUERIES), ("warm-up on, at once", 4, False, QUERIES),
                                           ("warm-up on, after it", 4, True, max(QUERIES, steady))):
            queries = [" ".join(random.Random(7 + i).choices(WORDS, k=6)) for i in range(count)]
            rows += restart(data, label, stores, wait, evict, queries)
    return rows


async def server_copy(store_dir: Path, data: Path, model: str, dimension: int) -> None:
    """A server data directory serving a copy of the kept store: its Chroma, its keyword index as
    the metadata database, and the records a server keeps of the store and its files."""
    data.mkdir(parents=True)
    shutil.copytree(store_dir / "chroma", data / "chroma")
    shutil.copy2(store_dir / "keywords.db", data / "ggstack.db")
    url = f"sqlite:///{data / 'ggstack.db'}"
    keywords = KeywordIndex.open(url)
    files = -(-keywords.chunk_count(STORE_ID) // CHUNKS_PER_FILE)
    keywords.close()
    metadata = SqlMetadataStore.open(url)
    try:
        stamp = now()
        await metadata.put(VECTOR_STORE, STORE_ID, {
            "id": STORE_ID, "object": "vector_store", "created_at": stamp, "name": "bench", "metadata": {},
            "last_active_at": stamp, "embedding_model": model, "embedding_dimension": dimension,
            "chunking_strategy": {"type": "auto"}, "provider_id": "chromadb"})
        await metadata.put_many(VECTOR_STORE_FILE, [(f"file-{i}", {
            "id": f"file-{i}", "object": "vector_store.file", "vector_store_id": STORE_ID, "created_at": stamp,
            "attributes": {}, "chunking_strategy": {"type": "auto"}, "status": "completed", "usage_bytes": 0,
            "filename": f"file-{i}.txt", "generation": "bench", "attempts": 1}) for i in range(files)],
            parent=STORE_ID)
    finally:
        metadata.close()


def evict_page_cache(root: Path) -> None:
    """Drop the OS's cached pages of every file under `root` (and of nothing else)."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def warmup_running(http: httpx.Client) -> bool:
    return "ggstack_search_warmup_running 1" in http.get("/metrics").text.splitlines()


def restart(data: Path, label: str, warmup_stores: int, wait: bool, evict: bool, queries: list[str]) -> list[str]:
    if evict:
        evict_page_cache(data)
    started = time.perf_counter()
    process, url = serve_ggstack({"default_models": True, "search_warmup_stores": warmup_stores}, data,
                                 log=data / f"server-{warmup_stores}-{wait}.log")
    ready_s, rss = time.perf_counter() - started, {"ready": rss_mib(process.pid)}
    rows, note = [], ""
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            if wait:
                began = time.perf_counter()
                while warmup_running(http) and time.perf_counter() - began < WARMUP_WAIT_S:
                    time.sleep(0.1)
                note = f", waited {time.perf_counter() - began:.1f} s for the warm-up"
                rss["after the wait"] = rss_mib(process.pid)
            for mode in SEARCH_MODES:
                samples = [searched(http, q, mode) for q in queries]
                rows.append(f"| {label} | {mode} | {samples[0]:.0f} | {len(samples)} | {statistics.median(samples):.1f}/"
                            f"{percentile(samples, 0.95):.1f}/{percentile(samples, 0.99):.1f}/{max(samples):.0f} |")
                print(rows[-1], flush=True)
            rss["after the searches"] = rss_mib(process.pid)
    finally:
        stop(process)
    memory = ", ".join(f"{name} {mib:.0f}" for name, mib in rss.items())
    print(f"{label}: ready {ready_s:.1f} s after the start{note}; RSS MiB: {memory}", flush=True)
    return rows + [f"| {label} | ready {ready_s:.1f} s{note}; RSS MiB {memory} | | | |"]


def searched(http: httpx.Client, query: str, mode: str) -> float:
    """One search's latency in ms; it must return the 10 chunks asked for."""
    started = time.perf_counter()
    answer = http.post(f"/v1/vector_stores/{STORE_ID}/search",
                       json={"query": query, "search_mode": mode, "max_num_results": 10})
    elapsed = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    assert len(answer.json()["data"]) == 10, answer.text[:300]
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0, help="text to ingest per mode, in MB (0 skips)")
    parser.add_argument("--sizes", default="10000,100000", help="store sizes to search, comma-separated")
    parser.add_argument("--modes", default="embedded,server", help="embedded, server or both")
    parser.add_argument("--store-dir", type=Path, help="search only, embedded, on a store kept in this "
                        "directory (filled on the first run); skips ingestion and --modes")
    parser.add_argument("--grow", type=int, default=0, help="with --store-dir: also time adding this many "
                        "chunks to a copy of the kept store (the copy is deleted)")
    parser.add_argument("--restarts", action=argparse.BooleanOptionalAction, default=True,
                        help="with --store-dir: first search a copy through `ggstack serve` right after each of "
                        "three starts (warm-up off; on; on and waited for)")
    parser.add_argument("--steady-queries", type=int, default=STEADY_QUERIES,
                        help="with --store-dir: searches per mode over HTTP after the warm-up (the target's figure)")
    parser.add_argument("--evict", action=argparse.BooleanOptionalAction, default=True,
                        help="drop the copy's files from the OS page cache before each server start")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
