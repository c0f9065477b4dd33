"""Speech to text on whisper.cpp (ggml), through pywhispercpp's bindings.

Why whisper.cpp and not CTranslate2 (faster-whisper), from `bench/media.py` (docs/benchmarks.md):
from the same weights both hear the same words (equal WER on espeak-ng speech), whisper.cpp
loads 1.7-2.5x faster and is the ggml family the LLMs already run on, so no second runtime;
CTranslate2 transcribed 1.4-1.6x faster on 2 busy cores (whisper.cpp always encodes a full
30 s window, which short clips pay for). The issue asks for ggml where it is reachable, and it is.

A whisper.cpp context is not thread-safe, so it lives on its own `ModelWorker` thread like the
LLMs do; a request queues one job that decodes the upload window by window and runs
`whisper_full` on each, so memory stays bounded by the window, not the file.
"""

from __future__ import annotations

import logging
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ggstack.audio.decode import PcmWindows
from ggstack.core.errors import InvalidValueError, UnsupportedError
from ggstack.engines.worker import DEFAULT_MAX_QUEUE, ModelWorker, default_threads

log = logging.getLogger("ggstack.audio")

#: whisper.cpp reports times in 10 ms ticks.
TICK = 0.01


@dataclass
class Word:
    word: str
    start: float
    end: float


@dataclass
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float


@dataclass
class Transcript:
    """What one transcription or translation produced, before any response format shapes it."""

    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


@dataclass(frozen=True)
class AsrOptions:
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    translate: bool = False
    words: bool = False


class WhisperModel:
    """One whisper.cpp context; only ever touched from its worker thread."""

    def __init__(self, path: Path, *, threads: int) -> None:
        import _pywhispercpp as pw  # imported here: only ASR needs it

        self._pw = pw
        self.threads = threads
        self.ctx = pw.whisper_init_from_file_with_params(str(path), pw.whisper_context_default_params())
        if self.ctx is None:
            raise InvalidValueError(f"{path.name} is not a whisper.cpp model file", field="path")
        self.multilingual = bool(pw.whisper_is_multilingual(self.ctx))

    def close(self) -> None:
        if self.ctx is not None:
            self._pw.whisper_free(self.ctx)
            self.ctx = None

    def params(self, options: AsrOptions, cancelled: threading.Event) -> Any:
        pw = self._pw
        params = pw.whisper_full_default_params(pw.whisper_sampling_strategy.WHISPER_SAMPLING_GREEDY)
        params.n_threads = self.threads
        params.print_progress = False
        params.print_realtime = False
        params.print_timestamps = False
        params.language = options.language or ("auto" if self.multilingual else "en")
        params.translate = options.translate
        params.temperature = options.temperature
        params.token_timestamps = options.words
        if options.prompt:
            params.initial_prompt = options.prompt
        pw.assign_abort_callback(params, cancelled.is_set)
        return params

    def run(self, windows: PcmWindows, options: AsrOptions, cancelled: threading.Event) -> Transcript:
        """Transcribe every window in turn, with times shifted to the window's place in the file."""
        params = self.params(options, cancelled)
        transcript = Transcript(language="", duration=0.0)
        for offset, pcm in windows:
            if cancelled.is_set():
                break
            self._pw.whisper_full(self.ctx, params, pcm, pcm.size)
            if not transcript.language:
                transcript.language = self._pw.whisper_lang_str(self._pw.whisper_full_lang_id(self.ctx))
            self._collect(transcript, offset, options)
        transcript.duration = windows.duration
        return transcript

    def _collect(self, transcript: Transcript, offset: float, options: AsrOptions) -> None:
        pw, ctx = self._pw, self.ctx
        eot = pw.whisper_token_eot(ctx)
        for i in range(pw.whisper_full_n_segments(ctx)):
            text = pw.whisper_full_get_segment_text(ctx, i).decode("utf-8", errors="replace")
            tokens = [pw.whisper_full_get_token_data(ctx, i, j) for j in range(pw.whisper_full_n_tokens(ctx, i))]
            spoken = [t for t in tokens if t.id < eot]
            start = offset + pw.whisper_full_get_segment_t0(ctx, i) * TICK
            transcript.segments.append(Segment(
                id=len(transcript.segments), seek=int(offset / TICK), start=round(start, 2),
                end=round(offset + pw.whisper_full_get_segment_t1(ctx, i) * TICK, 2), text=text,
                tokens=[t.id for t in spoken], temperature=options.temperature,
                avg_logprob=float(np.mean([t.plog for t in spoken])) if spoken else 0.0,
                compression_ratio=_compression_ratio(text)))
            if options.words:
                transcript.words += self._words(spoken, offset)

    def _words(self, tokens: list[Any], offset: float) -> list[Word]:
        """Tokens joined into words: a token that starts with a space starts a new word."""
        words: list[Word] = []
        for token in tokens:
            piece = self._pw.whisper_token_to_str(self.ctx, token.id)
            text = piece.decode("utf-8", errors="replace") if isinstance(piece, bytes) else piece
            start, end = offset + token.t0 * TICK, offset + token.t1 * TICK
            if not words or text.startswith(" "):
                if text.strip():
                    words.append(Word(text.strip(), round(start, 2), round(end, 2)))
            else:
                words[-1].word += text
                words[-1].end = round(end, 2)
        return words


def _compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return round(len(raw) / len(zlib.compress(raw)), 3) if raw else 0.0


class WhisperEngine:
    """A loaded ASR model: one worker thread, a bounded queue of transcription jobs."""

    def __init__(self, name: str, worker: ModelWorker[WhisperModel], model: WhisperModel) -> None:
        self.name = name
        self._worker = worker
        self.multilingual = model.multilingual

    @classmethod
    async def load(cls, name: str, path: Path, *, options: dict[str, Any] | None = None,
                   max_queue: int = DEFAULT_MAX_QUEUE, **_: Any) -> WhisperEngine:
        threads = int((options or {}).get("n_threads") or default_threads())
        worker: ModelWorker[WhisperModel] = ModelWorker(name, lambda: WhisperModel(path, threads=threads),
                                                        max_queue=max_queue)
        model = await worker.start()
        return cls(name, worker, model)

    async def transcribe(self, windows: PcmWindows, options: AsrOptions) -> Transcript:
        if options.translate and not self.multilingual:
            raise UnsupportedError(f"model '{self.name}' is English-only and cannot translate; "
                                   "use a multilingual Whisper model such as whisper-base")
        if options.language and options.language != "en" and not self.multilingual:
            raise InvalidValueError(f"model '{self.name}' is English-only; language '{options.language}' "
                                    "needs a multilingual Whisper model such as whisper-base", field="language")
        cancelled = threading.Event()
        try:
            return await self._worker.call(lambda model: model.run(windows, options, cancelled))
        finally:
            cancelled.set()

    def close(self) -> None:
        self._worker.close()
