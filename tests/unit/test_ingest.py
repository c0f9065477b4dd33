"""Text extraction for each supported format, and token-window chunking."""

from __future__ import annotations

import json

import pytest

from ggstack.core.errors import InvalidValueError
from ggstack.ingest.chunking import chunk_text, chunk_tokens, chunking_params
from ggstack.ingest.extract import ExtractionError, extract, extract_text, html_to_text


def make_pdf(pages: list[str]) -> bytes:
    """A small, valid PDF written by hand: one Helvetica text line per page, correct xref."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # pages tree, filled in below once the page object numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for text in pages:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content_number = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>" % content_number)
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# -- extraction -------------------------------------------------------------------------

def test_plain_text_and_markdown_pass_through():
    assert extract_text("héllo\nworld".encode(), content_type="text/plain") == "héllo\nworld"
    md = "# Title\n\n- item *one*\n"
    assert extract_text(md.encode(), filename="notes.md") == md
    assert extract_text("\ufeffbom text".encode("utf-8"), filename="a.txt") == "bom text"
    assert extract_text("utf16 text".encode("utf-16"), filename="a.txt") == "utf16 text"


def test_json_is_validated_and_pretty_printed():
    text = extract_text(b'{"name":"ggstack","tags":["a","b"]}', content_type="application/json")
    assert json.loads(text) == {"name": "ggstack", "tags": ["a", "b"]}
    assert '\n  "name": "ggstack"' in text
    lines = extract_text(b'{"a":1}\n\n{"b":2}\n', filename="x.jsonl")
    assert lines == '{"a": 1}\n{"b": 2}'
    with pytest.raises(ExtractionError) as err:
        extract_text(b'{"name": ', filename="broken.json")
    assert "invalid JSON" in err.value.message and err.value.code == "invalid_file"


def test_csv_and_tsv_rows_become_lines():
    data = b'name,quote\nann,"hello, world"\n\nbob,plain\n'
    assert extract_text(data, content_type="text/csv; charset=utf-8") == (
        "name | quote\nann | hello, world\nbob | plain")
    assert extract_text(b"a\tb\n1\t2\n", filename="t.tsv") == "a | b\n1 | 2"
    with pytest.raises(ExtractionError):
        extract_text(b'a,"unterminated\n', filename="bad.csv")


def test_html_drops_scripts_and_styles_and_keeps_blocks():
    html = b"""<!doctype html><html><head><title>The  Page</title>
    <style>body { color: red }</style><script>var secret = "no";</script></head>
    <body><h1>Heading</h1><p>First &amp; <b>bold</b> para.</p><div>Second<br>line</div>
    <noscript>enable js</noscript><ul><li>one</li><li>two</li></ul></body></html>"""
    text = extract_text(html, content_type="text/html")
    assert text == "The Page\n\nHeading\nFirst & bold para.\nSecond\nline\none\ntwo"
    assert "secret" not in text and "color" not in text and "enable js" not in text
    assert html_to_text("<p>no title</p>") == "no title"


def test_real_pdf_text_is_extracted_page_by_page():
    pdf = make_pdf(["Hello from page one", "Second page (with parens)"])
    text = extract_text(pdf, content_type="application/pdf")
    assert "Hello from page one" in text and "Second page (with parens)" in text
    assert text.index("page one") < text.index("Second page")
    assert extract_text(pdf, filename="report.PDF") == text


def test_pdf_without_text_and_broken_pdf_fail_clearly():
    with pytest.raises(ExtractionError) as err:
        extract_text(make_pdf([""]), filename="scan.pdf")
    assert "no extractable text" in err.value.message
    with pytest.raises(ExtractionError) as err:
        extract_text(b"%PDF-1.4\nthis is not really a pdf", filename="x.pdf")
    assert err.value.code == "invalid_file"
    with pytest.raises(ExtractionError):
        extract_text(make_pdf(["truncated"])[:60], content_type="application/pdf")


def test_binary_and_unknown_types():
    with pytest.raises(ExtractionError) as err:
        extract_text(b"\x89PNG\r\n\x1a\n\x00\x00", content_type="image/png")
    assert "image/png" in err.value.message and err.value.code == "unsupported_file"
    with pytest.raises(ExtractionError):
        extract_text(b"\xff\xd8\xff\xe0 jpeg-ish \x80\x81", filename="photo.bin")
    with pytest.raises(ExtractionError):
        extract_text(b"abc\x00def", filename="blob.dat")
    # An unknown extension that is valid UTF-8 text is indexed as text.
    assert extract_text(b"def f():\n    return 1\n", filename="code.py") == "def f():\n    return 1\n"


def test_extraction_error_is_an_invalid_request():
    assert issubclass(ExtractionError, InvalidValueError)


@pytest.mark.anyio
async def test_async_extract_runs_off_the_loop():
    assert await extract(b"<p>hi</p>", content_type="text/html") == "hi"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- chunking ---------------------------------------------------------------------------

class WhitespaceTokenizer:
    """Words as tokens; ids index a vocabulary built as words are seen."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []

    def tokenize(self, text: str) -> list[int]:
        ids = []
        for word in text.split():
            if word not in self.vocab:
                self.vocab[word] = len(self.words)
                self.words.append(word)
            ids.append(self.vocab[word])
        return ids

    def detokenize(self, ids) -> str:
        return " ".join(self.words[i] for i in ids)


def test_chunk_tokens_windows_overlap_and_cover_the_end():
    tokens = list(range(250))
    windows = chunk_tokens(tokens, 100, 40)
    assert [(w[0], w[-1]) for w in windows] == [(0, 99), (60, 159), (120, 219), (180, 249)]
    assert chunk_tokens(list(range(100)), 100, 50) == [list(range(100))]
    assert chunk_tokens([], 100, 0) == []
    assert [len(w) for w in chunk_tokens(list(range(300)), 100, 0)] == [100, 100, 100]


def test_chunk_tokens_defaults_are_openai_auto():
    windows = chunk_tokens(list(range(2000)))
    assert [w[0] for w in windows] == [0, 400, 800, 1200]
    assert all(len(w) == 800 for w in windows)


@pytest.mark.parametrize(("size", "overlap", "param"), [
    (99, 0, "max_chunk_size_tokens"),
    (4097, 0, "max_chunk_size_tokens"),
    (200, 101, "chunk_overlap_tokens"),
    (200, -1, "chunk_overlap_tokens"),
])
def test_bad_chunk_sizes_name_the_param(size, overlap, param):
    with pytest.raises(InvalidValueError) as err:
        chunk_tokens(list(range(10)), size, overlap)
    assert err.value.field == f"chunking_strategy.static.{param}"


def test_chunk_text_with_a_tokenizer_pair():
    tok = WhitespaceTokenizer()
    text = " ".join(f"w{i}" for i in range(230))
    chunks = chunk_text(text, tokenize=tok.tokenize, detokenize=tok.detokenize,
                        max_chunk_size_tokens=100, chunk_overlap_tokens=50)
    assert [(c.start_token, c.n_tokens) for c in chunks] == [(0, 100), (50, 100), (100, 100), (150, 80)]
    assert chunks[0].text.split()[0] == "w0" and chunks[-1].text.split()[-1] == "w229"
    assert chunks[1].text.split()[:50] == chunks[0].text.split()[50:]
    assert chunk_text("   ", tokenize=tok.tokenize, detokenize=tok.detokenize) == []


def test_chunking_params_from_strategy():
    assert chunking_params(None) == (800, 400)
    assert chunking_params({"type": "auto"}) == (800, 400)
    assert chunking_params({"type": "static", "static": {"max_chunk_size_tokens": 300,
                                                          "chunk_overlap_tokens": 0}}) == (300, 0)
    with pytest.raises(InvalidValueError) as err:
        chunking_params({"type": "static", "static": {"max_chunk_size_tokens": 300,
                                                      "chunk_overlap_tokens": 200}})
    assert err.value.field == "chunking_strategy.static.chunk_overlap_tokens"
    with pytest.raises(InvalidValueError):
        chunking_params({"type": "other"})
    with pytest.raises(InvalidValueError):
        chunking_params({"type": "static"})
