"""Our CTranslate2 → ggml conversion is faithful: whisper.cpp on the converted file and
CTranslate2 (faster-whisper) on the checkpoint as shipped hear the same words in the same clip.

Both decode greedily from the same weights (f16 in the ggml file; CTranslate2 computes in
float32 on this CPU), so only rounding separates them; a mistake in the converter (a swapped
q/k/v split, a transposed matrix, a wrong mel filterbank) turns whisper.cpp's output to noise.
"""

from __future__ import annotations

import threading

from ggstack.audio.convert import ensure_whisper_ggml
from ggstack.audio.decode import PcmWindows
from ggstack.audio.models import whisper_specs
from ggstack.audio.whisper import AsrOptions, WhisperModel
from tests.media import espeak, word_error_rate

TEXT = "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step."


def test_converted_tiny_en_transcribes_as_ctranslate2_does(tmp_path):
    from faster_whisper import WhisperModel as FasterWhisper

    (tiny,) = [s for s in whisper_specs(tmp_path) if s.identifier == "whisper-tiny.en"]
    audio = espeak(TEXT, tmp_path / "speech.wav")
    ggml = ensure_whisper_ggml(tmp_path, "tiny.en", tiny.path)
    model = WhisperModel(ggml, threads=1)
    try:
        with audio.open("rb") as f:
            ours = model.run(PcmWindows(f, window_seconds=60), AsrOptions(language="en"), threading.Event()).text
    finally:
        model.close()
    reference = FasterWhisper(str(tiny.path), device="cpu", compute_type="float32", cpu_threads=1)
    segments, _ = reference.transcribe(str(audio), language="en", beam_size=1, best_of=1,
                                       condition_on_previous_text=False, vad_filter=False)
    theirs = " ".join(s.text.strip() for s in segments)
    assert word_error_rate(theirs, ours) <= 0.1, (ours, theirs)
    assert word_error_rate(TEXT, ours) <= 0.3, ours
