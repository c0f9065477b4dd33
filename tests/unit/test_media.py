"""Pure parts of the audio and image paths: the CTranslate2 → ggml converter's pieces, audio
windowing, transcript formats, image checks, and the multipart `a[]` form encoding."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest

from ggstack.audio.convert import ConversionError, mel_filters, read_ct2, token_bytes
from ggstack.audio.decode import SAMPLE_RATE, AudioDecodeError, PcmWindows, quiet_cut
from ggstack.audio.formats import srt, timestamp, vtt
from ggstack.audio.whisper import Segment, Transcript
from ggstack.http.errors import InvalidRequest
from ggstack.http.routing import set_form_field
from ggstack.images.esrgan import ImageDecodeError, read_square_image


def test_mel_filters_are_whispers():
    from faster_whisper.feature_extractor import FeatureExtractor

    expected = FeatureExtractor(feature_size=80).mel_filters
    assert mel_filters(80).shape == (80, 201)
    assert np.allclose(mel_filters(80), expected, atol=1e-7)


def test_token_bytes_undo_gpt2s_byte_alphabet():
    vocabulary = ["Ġhello", "Ċ", "Ã©", "!", "<|endoftext|>", "<|startoftranscript|>"]
    assert token_bytes(vocabulary) == [b" hello", b"\n", "é".encode(), b"!"]
    with pytest.raises(ConversionError):
        token_bytes(["a", "b"])


def ct2_file(path, variables: dict[str, np.ndarray], *, spec: str = "WhisperSpec", aliases=()) -> None:
    codes = {np.dtype("<f4"): 0, np.dtype("i1"): 1, np.dtype("<i2"): 2, np.dtype("<f2"): 4}

    def name(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + name(spec) + struct.pack("<II", 3, len(variables))
    for key, array in variables.items():
        out += name(key) + struct.pack("<B", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
        out += struct.pack("<BI", codes[array.dtype], array.nbytes) + array.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(name(a) + name(t) for a, t in aliases)
    path.write_bytes(out)


def test_read_ct2_reads_variables_and_aliases(tmp_path):
    weights = np.arange(6, dtype=np.float16).reshape(2, 3)
    ct2_file(tmp_path / "model.bin", {"decoder/embeddings/weight": weights,
                                      "decoder/num_heads": np.array(8, dtype=np.int16)},
             aliases=[("decoder/projection/weight", "decoder/embeddings/weight")])
    variables = read_ct2(tmp_path / "model.bin")
    assert np.array_equal(variables["decoder/projection/weight"], weights)
    assert int(variables["decoder/num_heads"]) == 8


@pytest.mark.parametrize("corrupt", ["spec", "truncated", "size"])
def test_read_ct2_refuses_what_is_not_a_whisper_checkpoint(tmp_path, corrupt):
    path = tmp_path / "model.bin"
    ct2_file(path, {"w": np.zeros((4, 4), dtype=np.float32)}, spec="TransformerSpec" if corrupt == "spec" else "WhisperSpec")
    data = path.read_bytes()
    if corrupt == "truncated":
        path.write_bytes(data[:40])
    if corrupt == "size":
        path.write_bytes(data[:-60])
    with pytest.raises(ConversionError):
        read_ct2(path)


def wav_bytes(pcm: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((pcm * 32767).astype(np.int16).tobytes())
    return out.getvalue()


def test_windows_cut_at_the_quietest_point_and_lose_nothing():
    tone = 0.5 * np.sin(np.linspace(0, 2000 * np.pi, SAMPLE_RATE * 25)).astype(np.float32)
    tone[SAMPLE_RATE * 9:SAMPLE_RATE * 9 + SAMPLE_RATE // 5] = 0  # a pause 9.0-9.2 s into the audio
    windows = PcmWindows(io.BytesIO(wav_bytes(tone)), window_seconds=10)
    parts = list(windows)
    assert parts[1][0] == pytest.approx(9.0, abs=0.03)  # the first cut is in the pause
    assert sum(len(p) for _, p in parts) == len(tone) and windows.duration == pytest.approx(25, abs=0.01)
    assert all(len(p) <= 10 * SAMPLE_RATE for _, p in parts)


def test_quiet_cut_without_room_keeps_everything():
    assert quiet_cut(np.ones(100, dtype=np.float32), 50) == 100


@pytest.mark.parametrize("data", [b"", b"RIFF", b"plain text, not audio" * 20])
def test_undecodable_audio_is_a_decode_error(data):
    with pytest.raises(AudioDecodeError) as caught:
        list(PcmWindows(io.BytesIO(data), window_seconds=10))
    assert caught.value.field == "file"


def transcript() -> Transcript:
    segment = {"seek": 0, "tokens": [], "temperature": 0.0, "avg_logprob": -0.1, "compression_ratio": 1.0}
    return Transcript(language="en", duration=3725.5, segments=[
        Segment(id=0, start=0.0, end=1.5, text=" Hello.", **segment),
        Segment(id=1, start=3723.25, end=3725.5, text=" Bye.", **segment)])


def test_subtitle_formats():
    assert timestamp(3723.25, separator=",") == "01:02:03,250"
    assert srt(transcript()) == "1\n00:00:00,000 --> 00:00:01,500\nHello.\n\n2\n01:02:03,250 --> 01:02:05,500\nBye.\n"
    assert vtt(transcript()).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello.\n")
    assert transcript().text == "Hello. Bye."


def png_bytes(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, format=fmt)
    return out.getvalue()


def test_square_images_are_read_and_others_refused():
    assert read_square_image(png_bytes((16, 16))).size == (16, 16)
    assert read_square_image(png_bytes((16, 16), "WEBP")).size == (16, 16)
    for data, words in [(png_bytes((16, 8)), "square"), (png_bytes((64, 64)), "at most"),
                        (png_bytes((16, 16), "GIF"), "PNG, JPEG or WebP"), (b"nope", "not an image"),
                        (png_bytes((16, 16))[:60], "not an image")]:
        with pytest.raises(ImageDecodeError) as caught:
            read_square_image(data, max_side=32)
        assert words in caught.value.message


def test_form_brackets_make_lists():
    fields: dict = {}
    set_form_field(fields, "timestamp_granularities[]", "word")
    set_form_field(fields, "timestamp_granularities[]", "segment")
    assert fields == {"timestamp_granularities": ["word", "segment"]}
    with pytest.raises(InvalidRequest):
        set_form_field({"a": "1"}, "a[]", "2")


def test_a_plain_field_given_twice_is_a_list():
    fields: dict = {}
    for value in ("word", "segment", "word"):
        set_form_field(fields, "timestamp_granularities", value)
    assert fields == {"timestamp_granularities": ["word", "segment", "word"]}
