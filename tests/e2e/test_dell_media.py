"""Dell's audio, image-variation and performance routes through a real server and the openai SDK,
on the bundled Whisper (tiny.en, base) and Real-ESRGAN x4plus weights, with espeak-ng speech.

Bounds, measured on this machine (docs/benchmarks.md has the run):
- WER of tiny.en on espeak-ng's formant speech: 0.15-0.2 on these sentences (espeak's "sells
  sea shells" is misheard); the bound 0.3 leaves room for thread-count differences in float
  sums, while a broken conversion or decoder gives a WER near 1.
- Real-ESRGAN on the 64×64 downscale of a 256×256 drawing: mean gradient 6.4 against bicubic's
  4.9 (original 5.8), SSIM to the original 0.93 against bicubic's 0.86. The bounds (gradient
  ≥ 1.15× bicubic, SSIM ≥ 0.88) fail for any plain resize, and for a seam-marked tiling.
"""

from __future__ import annotations

import base64
import io
import json
import re
import wave

import av
import numpy as np
import openai
import pytest

from ggstack.audio.models import whisper_specs
from ggstack.images.esrgan import esrgan_specs
from tests.media import drawing, espeak, mean_gradient, png, ssim, word_error_rate
from tests.server import http_client, openai_client, served

SENTENCES = ("The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a "
             "single step. The birch canoe slid on the smooth planks.")
GERMAN = "Guten Morgen. Das Wetter ist heute sehr schön, und wir gehen in den Park."
WER_BOUND = 0.3
SSIM_BOUND = 0.88
SHARPNESS_RATIO = 1.15
UPLOAD_LIMIT = 3_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    data_dir = tmp_path_factory.mktemp("dell-media")
    bundled = [spec.model_dump(mode="json") for spec in whisper_specs(data_dir) + esrgan_specs()]
    assert {m["identifier"] for m in bundled} == {"whisper-tiny.en", "whisper-base", "realesrgan"}
    for model in bundled:
        if model["identifier"] == "realesrgan":
            model["options"] = {"tile": 40}  # a 64×64 input in four tiles: seams would show in SSIM
    models = bundled + [
        {"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm", "context_length": 512},
        {"identifier": "tiny-unloaded", "path": str(tiny_chat_gguf), "model_type": "llm", "context_length": 512},
        {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    config = {"models": models, "max_upload_bytes": UPLOAD_LIMIT, "asr_window_seconds": 10, "image_max_side": 128}
    yield from served(data_dir, config=config)


@pytest.fixture
def client(server):
    yield from openai_client(server, "/v1/openai")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return espeak(SENTENCES, tmp_path_factory.mktemp("speech") / "speech.wav")


def dell_error(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert {"message", "type", "code"} <= set(body) <= {"message", "type", "param", "code"}, body
    return body


# -- transcription ---------------------------------------------------------------------------------

def test_transcription_word_error_rate_is_within_bound(client, speech):
    result = client.audio.transcriptions.create(model="whisper-1", file=speech.open("rb"))
    assert word_error_rate(SENTENCES, result.text) <= WER_BOUND, result.text


def test_every_response_format_parses(client, speech):
    text = client.audio.transcriptions.create(model="whisper", file=speech.open("rb"), response_format="text")
    assert word_error_rate(SENTENCES, text) <= WER_BOUND

    srt = client.audio.transcriptions.create(model="whisper", file=speech.open("rb"), response_format="srt")
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+?)\n", srt)
    assert [int(c[0]) for c in cues] == list(range(1, len(cues) + 1)) and cues
    assert word_error_rate(SENTENCES, " ".join(c[3] for c in cues)) <= WER_BOUND

    vtt = client.audio.transcriptions.create(model="whisper", file=speech.open("rb"), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n")
    assert re.findall(r"\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n", vtt)

    verbose = client.audio.transcriptions.create(model="whisper", file=speech.open("rb"),
                                                 response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"])
    assert verbose.language == "english"
    with wave.open(str(speech)) as w:
        assert abs(float(verbose.duration) - w.getnframes() / w.getframerate()) < 0.1
    assert word_error_rate(SENTENCES, verbose.text) <= WER_BOUND
    starts = [s.start for s in verbose.segments]
    assert starts == sorted(starts) and all(s.end >= s.start for s in verbose.segments)
    assert len(verbose.words) >= 15
    assert all(0 <= w.start <= w.end <= float(verbose.duration) + 0.5 for w in verbose.words)
    assert word_error_rate(SENTENCES, " ".join(w.word for w in verbose.words)) <= WER_BOUND


def test_mp3_and_long_audio_in_windows(client, speech, tmp_path):
    """Three copies (about 33 s, the server's window is 10 s) as an mp3: all three are heard."""
    with wave.open(str(speech)) as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    gap = np.zeros(rate // 2, dtype=np.int16)
    long = np.concatenate([pcm, gap, pcm, gap, pcm])
    path = tmp_path / "long.mp3"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(long.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)
    result = client.audio.transcriptions.create(model="whisper-tiny.en", file=path.open("rb"),
                                                response_format="verbose_json")
    assert abs(float(result.duration) - len(long) / rate) < 0.5
    assert word_error_rate(" ".join([SENTENCES] * 3), result.text) <= WER_BOUND, result.text
    assert result.segments[-1].end > 20  # times are shifted to each window's place in the file


@pytest.mark.parametrize("name, data", [
    ("not-audio.wav", b"this is not audio at all, just some text" * 10),
    ("truncated.wav", b"RIFF\x24\x00\x00\x00WAVEfmt "),
    ("odd-format.wav", b"RIFF\x24\x10\x00\x00WAVEfmt \x10\x00\x00\x00\x34\x12\x01\x00\x80\x3e\x00\x00"
                       b"\x00\x7d\x00\x00\x02\x00\x10\x00data\x00\x10\x00\x00" + bytes(4096)),
    ("empty.wav", b""),
])
def test_bad_audio_is_400_in_dells_shape(client, name, data):
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=(name, data, "audio/wav"))
    body = dell_error(caught.value)
    assert body["param"] == "file" and body["type"] == "invalid_request_error"


def test_upload_over_limit_is_413(client):
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", bytes(UPLOAD_LIMIT + 1), "audio/wav"))
    assert caught.value.status_code == 413
    assert "limit" in dell_error(caught.value)["message"]


def test_unknown_model_is_404(client, speech):
    with pytest.raises(openai.NotFoundError) as caught:
        client.audio.transcriptions.create(model="no-such-model", file=speech.open("rb"))
    assert "not found" in dell_error(caught.value)["message"]


# -- translation -----------------------------------------------------------------------------------

def test_translation_with_the_multilingual_model(client, tmp_path):
    german = espeak(GERMAN, tmp_path / "de.wav", voice="de")
    result = client.audio.translations.create(model="whisper-1", file=german.open("rb"))
    heard = set(result.text.lower().replace(",", " ").replace(".", " ").split())
    assert {"good", "morning", "park"} <= heard, result.text


def test_translation_with_an_english_only_model_is_501_naming_one_that_can(client, speech):
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.translations.create(model="whisper-tiny.en", file=speech.open("rb"))
    assert caught.value.status_code == 501
    assert "whisper-base" in dell_error(caught.value)["message"]


# -- image variations ------------------------------------------------------------------------------

def test_upscale_is_4x_sharper_than_bicubic_and_close_to_the_original(client):
    from PIL import Image

    original = drawing(256)
    small = original.resize((64, 64), Image.Resampling.BICUBIC)
    result = client.images.create_variation(image=("small.png", png(small), "image/png"), model="realesrgan",
                                            n=2, size="256x256")
    assert len(result.data) == 2
    upscaled = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert upscaled.format == "PNG" and upscaled.size == (256, 256)
    bicubic = small.resize((256, 256), Image.Resampling.BICUBIC)
    assert mean_gradient(upscaled) >= SHARPNESS_RATIO * mean_gradient(bicubic)
    assert ssim(upscaled, original) >= SSIM_BOUND > ssim(bicubic, original)


def test_jpeg_with_default_model(client):
    from PIL import Image

    out = io.BytesIO()
    drawing(16).save(out, format="JPEG")
    result = client.images.create_variation(image=("tiny.jpg", out.getvalue(), "image/jpeg"))
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).size == (64, 64)


def bad_images() -> list:
    from PIL import Image

    wide = png(Image.new("RGB", (32, 16)))
    big = png(drawing(160))
    gif = io.BytesIO()
    Image.new("RGB", (16, 16)).save(gif, format="GIF")
    return [("not an image", b"hello, world"), ("not square", wide), ("too large", big),
            ("corrupt", png(drawing(32))[:200]), ("a GIF", gif.getvalue()), ("empty", b"")]


@pytest.mark.parametrize("case", range(6))
def test_bad_image_is_400_in_dells_shape(client, case):
    label, data = bad_images()[case]
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.create_variation(image=("x.png", data, "image/png"))
    assert dell_error(caught.value)["param"] == "image", label


def test_size_other_than_4x_is_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.create_variation(image=("x.png", png(drawing(16)), "image/png"), size="1024x1024")
    assert dell_error(caught.value)["param"] == "size"


# -- performance and embeddings --------------------------------------------------------------------

@pytest.fixture
def http(server):
    yield from http_client(server, "/v1", timeout=600)


@pytest.mark.parametrize("model, trials, metrics", [
    ("tiny", 3, {"time_to_first_token", "tokens_per_second"}),
    ("tiny-embed", 2, set()),
    ("whisper", 2, {"real_time_factor"}),
    ("realesrgan", 1, set()),
])
def test_performance_runs_the_trials_asked(http, model, trials, metrics):
    response = http.post("/performance", json={"model": model, "trials": trials})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == model and body["trials"] == trials and body["result"]
    assert len(body["execution_times"]) == trials and all(t > 0 for t in body["execution_times"])
    assert body["average_execution_times"] == pytest.approx(sum(body["execution_times"]) / trials, abs=1e-3)
    assert body["load_time"] > 0 or "already loaded" in body["result"]
    assert set(body.get("extra_metrics") or {}) == metrics
    for values in (body.get("extra_metrics") or {}).values():
        assert len(values) == trials and all(v > 0 for v in values)


def test_performance_load_time_is_measured_on_first_load(http):
    body = http.post("/performance", json={"model": "tiny-unloaded", "trials": 1}).json()
    assert body["load_time"] > 0 and "already" not in body["result"]
    again = http.post("/performance", json={"model": "tiny-unloaded", "trials": 1}).json()
    assert again["load_time"] == 0 and "already loaded" in again["result"]


@pytest.mark.parametrize("body, status", [({"model": "nope", "trials": 1}, 404), ({"model": "tiny", "trials": 51}, 400),
                                          ({"model": "tiny", "trials": 0}, 400)])
def test_performance_bad_requests(http, body, status):
    response = http.post("/performance", json=body)
    assert response.status_code == status
    assert {"message", "type", "code"} <= set(response.json()) <= {"message", "type", "param", "code"}


def test_embeddings_with_the_sdk_default_base64(client):
    default = client.embeddings.create(model="tiny-embed", input=["hello world", "bye"])
    floats = client.embeddings.create(model="tiny-embed", input=["hello world", "bye"], encoding_format="float")
    assert len(default.data) == 2
    for a, b in zip(default.data, floats.data, strict=True):
        assert np.allclose(a.embedding, b.embedding, atol=1e-6)


def test_models_lists_show_the_media_models(client, http):
    dell = {m.id: m for m in client.models.list()}
    assert {"whisper-tiny.en", "whisper-base", "realesrgan"} <= set(dell)
    native = {m["identifier"]: m["model_type"] for m in http.get("/models").json()["data"]}
    assert native["whisper-tiny.en"] == "asr" and native["realesrgan"] == "image"
    assert json.loads(http.get("/openai/models").text)["data"]
