"""Text out of an uploaded file, chosen by content type, then by filename extension.

Plain text, Markdown, JSON/JSONL, CSV/TSV, HTML and PDF. Anything else is tried as UTF-8
text and rejected if it is not. `extract_text` is blocking (PDF parsing can take a while):
call `extract` from async code, or `extract_text` in a worker thread.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from html.parser import HTMLParser
from pathlib import PurePosixPath

import anyio.to_thread

from ggstack.core.errors import InvalidValueError

log = logging.getLogger("ggstack.ingest.extract")

TEXT, MARKDOWN, JSON, JSONL, CSV, TSV, HTML, PDF = (
    "text", "markdown", "json", "jsonl", "csv", "tsv", "html", "pdf")

CONTENT_TYPES = {
    "text/plain": TEXT,
    "text/markdown": MARKDOWN,
    "text/x-markdown": MARKDOWN,
    "application/json": JSON,
    "application/jsonl": JSONL,
    "application/x-ndjson": JSONL,
    "application/jsonlines": JSONL,
    "text/csv": CSV,
    "text/tab-separated-values": TSV,
    "text/html": HTML,
    "application/xhtml+xml": HTML,
    "application/pdf": PDF,
}

EXTENSIONS = {
    ".txt": TEXT, ".text": TEXT, ".md": MARKDOWN, ".markdown": MARKDOWN, ".json": JSON,
    ".jsonl": JSONL, ".ndjson": JSONL, ".csv": CSV, ".tsv": TSV, ".html": HTML, ".htm": HTML,
    ".xhtml": HTML, ".pdf": PDF,
}

#: Types we know are not text; trying to decode them would only produce a vaguer error.
BINARY_PREFIXES = ("image/", "audio/", "video/", "application/zip", "application/gzip",
                   "application/x-tar", "application/vnd.", "application/msword")


class ExtractionError(InvalidValueError):
    """The file could not be turned into text; the message fits a vector-store file's last_error.

    `code` is "unsupported_file" (a format we do not read) or "invalid_file" (a format we
    read, but this file is broken).
    """


def detect_format(content_type: str | None, filename: str | None) -> str | None:
    """The format name, or None when neither the type nor the extension says."""
    if content_type:
        base = content_type.split(";", 1)[0].strip().lower()
        if base in CONTENT_TYPES:
            return CONTENT_TYPES[base]
        if base.startswith(BINARY_PREFIXES):
            raise ExtractionError(f"files of type {base} cannot be indexed", code="unsupported_file")
    if filename:
        return EXTENSIONS.get(PurePosixPath(filename).suffix.lower())
    return None


def extract_text(data: bytes, *, content_type: str | None = None, filename: str | None = None) -> str:
    """The file's text; ExtractionError when it cannot be read. Empty input gives ""."""
    fmt = detect_format(content_type, filename)
    if fmt == PDF:
        return _pdf(data)
    text = _decode(data)
    if fmt == JSON:
        return _json(text)
    if fmt == JSONL:
        return _jsonl(text)
    if fmt in (CSV, TSV):
        return _table(text, "\t" if fmt == TSV else ",")
    if fmt == HTML:
        return html_to_text(text)
    return text


async def extract(data: bytes, *, content_type: str | None = None, filename: str | None = None) -> str:
    return await anyio.to_thread.run_sync(
        lambda: extract_text(data, content_type=content_type, filename=filename))


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise ExtractionError("file is not UTF-8 text and not a supported document format",
                              code="unsupported_file") from None
    if "\x00" in text:
        raise ExtractionError("file looks binary (it contains NUL bytes) and is not a supported "
                              "document format", code="unsupported_file")
    return text


def _json(text: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractionError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                              code="invalid_file") from None
    # Pretty-printed so keys and values become separate words for chunking and search.
    return json.dumps(value, indent=2, ensure_ascii=False)


def _jsonl(text: str) -> str:
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(json.dumps(json.loads(line), ensure_ascii=False))
        except json.JSONDecodeError as exc:
            raise ExtractionError(f"invalid JSON on line {number}: {exc.msg}", code="invalid_file") from None
    return "\n".join(lines)


def _table(text: str, delimiter: str) -> str:
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise ExtractionError(f"invalid CSV: {exc}", code="invalid_file") from None
    return "\n".join(" | ".join(cell.strip() for cell in row) for row in rows if any(row))


def _pdf(data: bytes) -> str:
    # Imported here: pypdf is only needed by the few requests that index PDFs.
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("PDF is password-protected", code="unsupported_file")
        pages = [page.extract_text() or "" for page in reader.pages]
    except ExtractionError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        # pypdf raises more than its own family on malformed input.
        log.info("PDF extraction failed: %r", exc)
        raise ExtractionError("PDF could not be read: the file is damaged or not a PDF",
                              code="invalid_file") from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if pages and not text:
        raise ExtractionError("PDF has no extractable text (it may contain only scanned images)",
                              code="unsupported_file")
    return text


# -- HTML -------------------------------------------------------------------------------

SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
    "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul", "title",
})


class _TextParser(HTMLParser):
    """Collects visible text; block elements become line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in SKIPPED:
            self._skip += 1
        if tag in BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in SKIPPED and self._skip:
            self._skip -= 1
        if tag in BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML document, title first, one block per line."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    title = " ".join("".join(parser.title).split())
    body = "\n".join(line for line in lines if line)
    return f"{title}\n\n{body}" if title and body else title or body
