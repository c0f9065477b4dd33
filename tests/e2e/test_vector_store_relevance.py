"""With the bundled all-MiniLM-L6-v2 (the default embedding model), a question finds the
document that answers it, though they share almost no words."""

from __future__ import annotations

import pytest

from tests.e2e.test_vector_stores import connect, search, upload
from tests.server import Server

DOCUMENTS = {
    "cats.md": "# Cats\n\nDomestic cats spend most of the day asleep, often twelve to sixteen hours, "
               "and hunt at dawn and dusk.",
    "volcanoes.txt": "A volcano erupts when molten rock, gas and ash escape from the magma chamber "
                     "through a vent in the Earth's crust.",
    "bread.txt": "To bake bread, mix flour, water, salt and yeast, knead the dough, let it rise, "
                 "then bake it in a hot oven.",
    "taxes.txt": "Income tax returns must be filed by April; deductions lower the taxable amount.",
}

QUESTIONS = {
    "How many hours do kittens nap?": "cats.md",
    "What happens during an eruption of a mountain of lava?": "volcanoes.txt",
    "How do I make a loaf at home?": "bread.txt",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("relevance"), config={"default_models": True}).start()
    client = connect(server)
    ids = [upload(client, name, text) for name, text in DOCUMENTS.items()]
    created = client.vector_stores.create(name="relevance", file_ids=ids)
    assert created.file_counts.completed == len(DOCUMENTS)
    yield client, created.id
    server.stop()
    assert not server.mismatches(), "\n".join(server.mismatches())


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_a_question_finds_the_document_that_answers_it(store, mode):
    client, store_id = store
    for question, expected in QUESTIONS.items():
        results = search(client, store_id, question, search_mode=mode)
        assert results[0].filename == expected, (question, [(r.filename, r.score) for r in results])
        if mode == "vector":
            assert results[0].score > results[1].score + 0.05
