"""A transcript in each of OpenAI's response formats: json, text, srt, verbose_json, vtt."""

from __future__ import annotations

from typing import Any

from ggstack.audio.whisper import Transcript

TEXT_FORMATS = ("text", "srt", "vtt")


def timestamp(seconds: float, *, separator: str) -> str:
    """`HH:MM:SS,mmm` (SubRip) or `HH:MM:SS.mmm` (WebVTT)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(transcript: Transcript) -> str:
    cues = [f"{i}\n{timestamp(s.start, separator=',')} --> {timestamp(s.end, separator=',')}\n{s.text.strip()}\n"
            for i, s in enumerate(transcript.segments, 1)]
    return "\n".join(cues)


def vtt(transcript: Transcript) -> str:
    cues = [f"{timestamp(s.start, separator='.')} --> {timestamp(s.end, separator='.')}\n{s.text.strip()}\n"
            for s in transcript.segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def text_body(transcript: Transcript, response_format: str) -> str:
    if response_format == "srt":
        return srt(transcript)
    if response_format == "vtt":
        return vtt(transcript)
    return transcript.text + "\n"


def verbose(transcript: Transcript, *, words: bool, task: str) -> dict[str, Any]:
    """OpenAI's verbose_json; `duration` is a string because Dell's schema says so."""
    body: dict[str, Any] = {
        "task": task,
        "language": LANGUAGE_NAMES.get(transcript.language, transcript.language),
        "duration": f"{transcript.duration:.2f}",
        "text": transcript.text,
        "segments": [{**vars(s), "text": s.text} for s in transcript.segments],
    }
    if words:
        body["words"] = [vars(w) for w in transcript.words]
    return body


# OpenAI reports the language by name in verbose_json; the common ones Whisper detects.
LANGUAGE_NAMES = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "pt": "portuguese",
    "nl": "dutch", "ru": "russian", "zh": "chinese", "ja": "japanese", "ko": "korean", "ar": "arabic",
    "hi": "hindi", "pl": "polish", "tr": "turkish", "sv": "swedish", "uk": "ukrainian", "cs": "czech",
}
