"""Speech-to-text engines side by side, and Real-ESRGAN upscale time per megapixel.

ASR: the same Whisper weights (the bundled CTranslate2 checkpoints: tiny.en and base) run on
whisper.cpp (our ggml conversion, through pywhispercpp, as the server does) and on CTranslate2
(faster-whisper, the checkpoint as shipped), greedy decoding, same thread count, in one run,
alternating, on espeak-ng speech of known sentences. Printed per engine: load time, real-time
factor (processing seconds per audio second, best of `--runs`; lower is faster), word error rate,
and whisper.cpp's RTF as a ratio of CTranslate2's.

Images: the server's UpscaleEngine (ncnn, CPU, tiled) on generated pictures of a few sizes;
seconds per input megapixel (the output has 16× the pixels).

Run: `python bench/media.py [--threads N] [--runs 3]` (needs espeak-ng and faster-whisper).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ggstack.audio.convert import convert_whisper
from ggstack.audio.decode import PcmWindows
from ggstack.audio.models import whisper_specs
from ggstack.audio.whisper import AsrOptions, WhisperModel
from ggstack.images.esrgan import UpscaleEngine, esrgan_specs
from tests.media import drawing, espeak, word_error_rate

TEXT = ("The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single "
        "step. The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
        "It is easy to tell the depth of a well.")


def ggml_for(spec, work: Path) -> tuple[Path, Path]:
    out = work / f"{spec.identifier}.ggml.bin"
    model_bin = None
    if spec.options.get("parts"):
        model_bin = work / f"{spec.identifier}.ct2.bin"
        model_bin.write_bytes(b"".join(Path(p).read_bytes() for p in spec.options["parts"]))
    convert_whisper(spec.path, out, model_bin=model_bin)
    return out, (model_bin.parent if model_bin else spec.path)


def ct2_dir(spec, model_bin_dir: Path, work: Path) -> Path:
    """faster-whisper wants model.bin + config + vocabulary in one folder."""
    if not spec.options.get("parts"):
        return spec.path
    folder = work / f"{spec.identifier}-ct2"
    folder.mkdir(exist_ok=True)
    (folder / "model.bin").symlink_to(work / f"{spec.identifier}.ct2.bin")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (folder / name).symlink_to(spec.path / name)
    return folder


def run_whispercpp(path: Path, audio: Path, threads: int, runs: int) -> tuple[float, float, str]:
    import threading

    started = time.perf_counter()
    model = WhisperModel(path, threads=threads)
    load = time.perf_counter() - started
    best, text = float("inf"), ""
    for _ in range(runs):
        with audio.open("rb") as f:
            windows = PcmWindows(f, window_seconds=300)
            started = time.perf_counter()
            transcript = model.run(windows, AsrOptions(language="en"), threading.Event())
            best = min(best, (time.perf_counter() - started) / transcript.duration)
            text = transcript.text
    model.close()
    return load, best, text


def run_ctranslate2(folder: Path, audio: Path, threads: int, runs: int, compute: str) -> tuple[float, float, str]:
    from faster_whisper import WhisperModel as FasterWhisper

    started = time.perf_counter()
    model = FasterWhisper(str(folder), device="cpu", compute_type=compute, cpu_threads=threads)
    load = time.perf_counter() - started
    best, text = float("inf"), ""
    for _ in range(runs):
        started = time.perf_counter()
        segments, info = model.transcribe(str(audio), language="en", beam_size=1, best_of=1,
                                          condition_on_previous_text=False, vad_filter=False)
        text = " ".join(s.text.strip() for s in segments)
        best = min(best, (time.perf_counter() - started) / info.duration)
    return load, best, text


def bench_asr(work: Path, threads: int, runs: int) -> None:
    audio = espeak(TEXT, work / "speech.wav")
    print(f"audio: espeak-ng, {len(TEXT.split())} words; threads {threads}, best of {runs}")
    print(f"{'model':18} {'engine':26} {'load s':>7} {'RTF':>7} {'WER':>6}")
    for spec in whisper_specs(work / "data"):
        ggml, bin_dir = ggml_for(spec, work)
        folder = ct2_dir(spec, bin_dir, work)
        rows = {}
        rows["whisper.cpp f16 (ggml)"] = run_whispercpp(ggml, audio, threads, runs)
        rows["CTranslate2 float32"] = run_ctranslate2(folder, audio, threads, runs, "float32")
        rows["CTranslate2 int8"] = run_ctranslate2(folder, audio, threads, runs, "int8")
        for engine, (load, rtf, text) in rows.items():
            print(f"{spec.identifier:18} {engine:26} {load:7.2f} {rtf:7.3f} {word_error_rate(TEXT, text):6.3f}")
        base = rows["CTranslate2 float32"][1]
        print(f"{'':18} whisper.cpp RTF / CTranslate2 float32 RTF = {rows['whisper.cpp f16 (ggml)'][1] / base:.2f}x")
        gap = word_error_rate(rows["CTranslate2 float32"][2], rows["whisper.cpp f16 (ggml)"][2])
        print(f"{'':18} word difference whisper.cpp vs CTranslate2 float32 (as WER): {gap:.3f}")


async def bench_images(threads: int, runs: int) -> None:
    from PIL import Image

    (spec,) = esrgan_specs()
    engine = await UpscaleEngine.load("bench", spec.path, options={"n_threads": threads})
    print(f"{'input':>9} {'seconds':>8} {'s / input MP':>13} {'s / output MP':>14}")
    for side in (32, 64, 128):
        picture = drawing(256).resize((side, side), Image.Resampling.BICUBIC)
        best = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            out = await engine.upscale(picture)
            best = min(best, time.perf_counter() - started)
        assert out.size == (side * 4, side * 4)
        megapixels = side * side / 1e6
        print(f"{side:4}x{side:<4} {best:8.2f} {best / megapixels:13.1f} {best / (16 * megapixels):14.1f}")
    engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        bench_asr(Path(tmp), args.threads, args.runs)
    asyncio.run(bench_images(args.threads, args.runs))


if __name__ == "__main__":
    main()
