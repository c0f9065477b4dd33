"""OpenAI search filters -> Chroma where, BM25 ranking and rank fusion (pure functions)."""

from __future__ import annotations

import pytest

from ggstack.core.errors import InvalidValueError
from ggstack.stores import bm25
from ggstack.stores.base import Chunk
from ggstack.stores.chroma import chunk_metadata, collection_name, fuse
from ggstack.stores.filters import combine, to_chroma_where


def test_comparison_filters_translate():
    assert to_chroma_where({"type": "eq", "key": "author", "value": "ann"}) == {"author": {"$eq": "ann"}}
    assert to_chroma_where({"type": "gte", "key": "year", "value": 2020}) == {"year": {"$gte": 2020}}
    assert to_chroma_where({"type": "in", "key": "tag", "value": ["a", "b"]}) == {"tag": {"$in": ["a", "b"]}}
    assert to_chroma_where(None) is None and to_chroma_where({}) is None


def test_compound_filters_nest_and_single_operands_unwrap():
    filters = {"type": "or", "filters": [
        {"type": "and", "filters": [{"type": "eq", "key": "a", "value": 1},
                                    {"type": "ne", "key": "b", "value": True}]},
        {"type": "and", "filters": [{"type": "lt", "key": "c", "value": 2.5}]},
    ]}
    assert to_chroma_where(filters) == {"$or": [
        {"$and": [{"a": {"$eq": 1}}, {"b": {"$ne": True}}]},
        {"c": {"$lt": 2.5}},
    ]}


@pytest.mark.parametrize("bad", [
    {"type": "like", "key": "a", "value": "x"},
    {"type": "gt", "key": "a", "value": "2020"},
    {"type": "gt", "key": "a", "value": True},
    {"type": "eq", "key": "", "value": 1},
    {"type": "eq", "key": "a", "value": {"nested": 1}},
    {"type": "in", "key": "a", "value": []},
    {"type": "and", "filters": []},
    {"type": "or", "filters": [{"type": "eq", "key": "a", "value": None}]},
    ["not", "an", "object"],
    {"type": "eq", "key": "$and", "value": 1},
    {"type": "or", "filters": [{"type": "eq", "key": "#document", "value": "x"},
                               {"type": "eq", "key": "a", "value": 1}]},
    {"type": "eq", "key": "a\nb", "value": 1},
])
def test_bad_filters_are_invalid_requests_naming_filters(bad):
    with pytest.raises(InvalidValueError) as err:
        to_chroma_where(bad)
    assert err.value.field.startswith("filters")


def test_combine():
    assert combine(None, {"a": {"$eq": 1}}) == {"a": {"$eq": 1}}
    assert combine({"a": 1}, {"b": 2}) == {"$and": [{"a": 1}, {"b": 2}]}
    assert combine(None, None) is None


def test_collection_names_are_valid_and_distinct():
    import re
    ids = ["vs_abc", "vs/abc", "vs abc", "", "x" * 600, "ünïcode", "a..b"]
    names = [collection_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert 3 <= len(name) <= 512
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9._-]*[a-zA-Z0-9]", name) and ".." not in name


def test_chunk_metadata_reserved_keys_win_and_values_are_checked():
    meta = chunk_metadata(Chunk("file-1", 3, "t", attributes={"_ggs_file_id": "evil", "k": 1, "n": None}))
    assert meta == {"_ggs_file_id": "file-1", "_ggs_index": 3, "k": 1}
    with pytest.raises(InvalidValueError):
        chunk_metadata(Chunk("f", 0, "t", attributes={"bad": [1, 2]}))


def test_bm25_prefers_rarer_terms_and_shorter_documents():
    docs = {
        "a": "the cat sat on the mat",
        "b": "the dog sat on the log",
        "c": "cat cat cat and a zebra",
        "d": "a zebra is a striped animal that lives in africa and eats grass all day long",
    }
    terms = bm25.query_terms("The zebra cat")
    assert terms == ["zebra", "cat"]
    df = {t: sum(t in bm25.words(d) for d in docs.values()) for t in terms}
    idfs = {t: bm25.idf(len(docs), df[t]) for t in terms}
    ranked = bm25.rank(docs, idfs)
    assert [doc_id for doc_id, _ in ranked] == ["c", "a", "d"]
    assert all(score > 0 for _, score in ranked)
    assert bm25.query_terms("the of") == ["the", "of"]
    assert bm25.query_terms("  !! ") == []


def test_shortlist_keeps_docs_with_rare_terms():
    postings = {"common": ["a", "b", "c", "d"], "rare": ["d"]}
    idfs = {"common": 0.1, "rare": 2.0}
    assert bm25.shortlist(postings, idfs, 2) == ["d", "a"]


def test_rrf_fusion_rewards_agreement_and_scores_in_unit_range():
    vector = [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    keyword = [("c", 0.6), ("a", 0.5), ("d", 0.4)]
    fused = fuse(vector, keyword, k=4, ranker="rrf", impact_factor=60.0, alpha=0.5)
    assert [chunk_id for chunk_id, _ in fused] == ["a", "c", "b", "d"]
    assert all(0 < score <= 1 for _, score in fused)
    top = fuse([("a", 1.0)], [("a", 1.0)], k=1, ranker="rrf", impact_factor=60.0, alpha=0.5)
    assert top[0][1] == pytest.approx(1.0)


def test_weighted_fusion_uses_alpha():
    vector = [("a", 0.9), ("b", 0.1)]
    keyword = [("b", 0.8)]
    only_vector = fuse(vector, keyword, k=2, ranker="weighted", impact_factor=60.0, alpha=1.0)
    assert [chunk_id for chunk_id, _ in only_vector] == ["a", "b"]
    only_keyword = fuse(vector, keyword, k=2, ranker="weighted", impact_factor=60.0, alpha=0.0)
    assert only_keyword[0][0] == "b"
