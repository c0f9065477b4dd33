"""Any audio file FFmpeg reads (wav, mp3, flac, ogg, webm, m4a, ...) as 16 kHz mono float32 windows.

PyAV (FFmpeg's libraries) does the demuxing, decoding and resampling; nothing here parses a
container by hand. Audio is decoded as a stream and handed on in windows of bounded length, so
an hour-long upload never sits in memory as one PCM array (an hour is 230 MB of float32).

A window is not cut at an arbitrary sample: within the last `CUT_SEARCH_SECONDS` of it, the
cut goes at the quietest 20 ms frame, so a word is rarely split between two windows (Whisper
would mishear both halves).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import av
import av.error
import numpy as np

from ggstack.core.errors import InvalidValueError

SAMPLE_RATE = 16_000
CUT_SEARCH_SECONDS = 3.0
FRAME = SAMPLE_RATE // 50  # 20 ms


class AudioDecodeError(InvalidValueError):
    """The upload is not audio FFmpeg can decode (not audio, empty, truncated, an unknown format)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="file")


def quiet_cut(pcm: np.ndarray, earliest: int) -> int:
    """The start of the quietest 20 ms frame at or after `earliest` (a frame boundary)."""
    tail = pcm[earliest:]
    frames = len(tail) // FRAME
    if frames < 2:
        return len(pcm)
    energy = np.square(tail[:frames * FRAME].reshape(frames, FRAME)).mean(axis=1)
    return earliest + int(np.argmin(energy)) * FRAME


class PcmWindows:
    """Iterate over (start_seconds, pcm) windows of one upload; `duration` is known once exhausted.

    Opening checks that the file holds a decodable audio stream, so a bad upload fails before
    any model work is queued.
    """

    def __init__(self, source: BinaryIO, *, window_seconds: float) -> None:
        if window_seconds < 2 * CUT_SEARCH_SECONDS:
            raise ValueError("window_seconds must leave room for the quiet-point search")
        self.window = int(window_seconds * SAMPLE_RATE)
        self.samples = 0
        try:
            self._container = av.open(source, mode="r")
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise AudioDecodeError(f"the file is not audio that can be decoded ({_reason(exc)})") from None
        audio = self._container.streams.audio
        if not audio:
            self._container.close()
            raise AudioDecodeError("the file has no audio stream")
        self._stream = audio[0]

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    def close(self) -> None:
        self._container.close()

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        pending = np.zeros(0, dtype=np.float32)
        emitted = 0
        for chunk in self._pcm_chunks():
            pending = np.concatenate([pending, chunk])
            while len(pending) >= self.window:
                cut = quiet_cut(pending[:self.window], self.window - int(CUT_SEARCH_SECONDS * SAMPLE_RATE))
                yield emitted / SAMPLE_RATE, pending[:cut]
                emitted += cut
                pending = pending[cut:]
        if emitted == 0 and len(pending) == 0:
            raise AudioDecodeError("the file holds no audio samples")
        if len(pending):
            yield emitted / SAMPLE_RATE, pending

    def _pcm_chunks(self) -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in self._container.decode(self._stream):
                for out in resampler.resample(frame):
                    yield self._counted(out)
            for out in resampler.resample(None):
                yield self._counted(out)
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioDecodeError(f"the audio cannot be decoded ({_reason(exc)})") from None

    def _counted(self, frame: av.AudioFrame) -> np.ndarray:
        pcm = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        self.samples += len(pcm)
        return pcm


def _reason(exc: Exception) -> str:
    # FFmpeg's messages name the file by its Python repr; keep only the reason.
    return getattr(exc, "strerror", None) or type(exc).__name__
