"""BM25 ranking for keyword search, and the word rules shared with candidate selection.

Words are lower-cased `\\w+` runs. Candidates are found in the vector backend with a
case-insensitive whole-word regex per query term (Chroma `where_document` `$regex`, which
works embedded and against a server); this module scores them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping

WORD = re.compile(r"\w+")

#: Dropped from queries (unless nothing else is left) so "the" does not pull in every chunk.
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "has",
    "have", "how", "in", "is", "it", "its", "no", "not", "of", "on", "or", "that", "the", "this",
    "to", "was", "were", "what", "when", "where", "which", "who", "why", "will", "with",
})

K1 = 1.2
B = 0.75
#: Keyword search scans the store once per term; words past this many are ignored.
MAX_QUERY_TERMS = 32


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def query_terms(text: str) -> list[str]:
    """Distinct query words in order, without stop words when there are others.

    Each term costs one scan of the store, so only the first MAX_QUERY_TERMS count."""
    seen = list(dict.fromkeys(words(text)))
    content = [w for w in seen if w not in STOP_WORDS]
    return (content or seen)[:MAX_QUERY_TERMS]


def term_pattern(term: str) -> str:
    """A regex for the backend; terms are `\\w+` runs, so there is nothing to escape."""
    return rf"(?i)\b{term}\b"


def idf(n_docs: int, df: int) -> float:
    """Lucene's BM25 idf: always positive, even for a term in most documents."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


def score(doc_words: Counter[str], doc_len: int, idfs: Mapping[str, float], avgdl: float) -> float:
    total = 0.0
    norm = K1 * (1.0 - B + B * doc_len / avgdl) if avgdl > 0 else K1
    for term, weight in idfs.items():
        tf = doc_words.get(term, 0)
        if tf:
            total += weight * tf * (K1 + 1.0) / (tf + norm)
    return total


def rank(docs: Mapping[str, str], idfs: Mapping[str, float], avgdl: float | None = None
         ) -> list[tuple[str, float]]:
    """(doc id, bm25) for docs containing at least one term, best first, ties by id.

    `avgdl` defaults to the mean length of `docs`.
    """
    tokenised = {doc_id: words(text) for doc_id, text in docs.items()}
    if avgdl is None:
        lengths = [len(ws) for ws in tokenised.values()]
        avgdl = sum(lengths) / len(lengths) if lengths else 0.0
    scored = [(doc_id, score(Counter(ws), len(ws), idfs, avgdl)) for doc_id, ws in tokenised.items()]
    return sorted(((d, s) for d, s in scored if s > 0), key=lambda item: (-item[1], item[0]))


def shortlist(postings: Mapping[str, Iterable[str]], idfs: Mapping[str, float], cap: int) -> list[str]:
    """At most `cap` candidate ids, preferring docs that hold more of the rarer terms.

    Used only when the terms match more chunks than are worth fetching and scoring.
    """
    weight: dict[str, float] = {}
    for term, ids in postings.items():
        for doc_id in ids:
            weight[doc_id] = weight.get(doc_id, 0.0) + idfs[term]
    ordered = sorted(weight, key=lambda d: (-weight[d], d))
    return ordered[:cap]
