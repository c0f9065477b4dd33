"""The one server every contract test talks to (stateless and stateful)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server import Server


@pytest.fixture(scope="session")
def contract_server(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_embed_gguf: Path,
                    tiny_rerank_gguf: Path) -> Server:
    """Tiny models, so inference and vector-store operations answer for real, not just 404, and
    Real-ESRGAN, so image variations reach their engine. No Whisper: Dell's /performance example
    (`whisper`, up to 50 trials in the coverage phase) would spend minutes transcribing; the
    audio routes answer 404 for it here and are driven for real in tests/e2e/test_dell_media.py."""
    from ggstack.images.esrgan import esrgan_specs

    data_dir = tmp_path_factory.mktemp("contract")
    media = [spec.model_dump(mode="json") for spec in esrgan_specs()]
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"},
              {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"},
              {"identifier": "tiny-rerank", "path": str(tiny_rerank_gguf), "model_type": "rerank"}, *media]
    config = {"models": models}
    server = Server(data_dir, config=config).start()
    yield server
    server.stop()
    assert not server.mismatches(), "\n".join(server.mismatches())
