"""`ggstack models list | register | remove` on a data directory, then a real server serving what was
registered; a BERT safetensors folder (the bundled MiniLM) converted with a progress bar."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from ggstack.cli import main
from ggstack.engines.convert import find_minilm_dir
from tests.server import Server


@pytest.fixture
def data_dir(tmp_path: Path, tiny_chat_gguf: Path) -> Path:
    (tmp_path / "models").mkdir()
    shutil.copy(tiny_chat_gguf, tmp_path / "models" / "tiny-chat.gguf")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"default_models": False}))
    return tmp_path


def models(data_dir: Path, *args: str) -> int:
    return main(["models", "--config", str(data_dir / "run.yaml"), "--data-dir", str(data_dir), *args])


def test_register_list_serve_remove(data_dir: Path, capsys) -> None:
    assert models(data_dir, "register", str(data_dir / "models" / "tiny-chat.gguf"), "--id", "tiny") == 0
    assert "registered tiny (llm" in capsys.readouterr().out
    assert models(data_dir, "list") == 0
    assert capsys.readouterr().out.split()[:3] == ["tiny", "llm", "registered"]
    server = Server(data_dir, config={}).start()
    try:
        listed = httpx.get(f"{server.url}/v1/models").json()["data"]
        assert [m["identifier"] for m in listed] == ["tiny"]
    finally:
        server.stop()
    assert models(data_dir, "remove", "tiny") == 0
    assert models(data_dir, "list") == 0
    assert "tiny" not in capsys.readouterr().out.replace("removed tiny", "")


def test_refusals_name_the_problem(data_dir: Path, tmp_path_factory, tiny_chat_gguf: Path, capsys) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "x.gguf"
    shutil.copy(tiny_chat_gguf, outside)
    assert models(data_dir, "register", str(outside)) == 1
    assert "outside the model directories" in capsys.readouterr().err
    assert models(data_dir, "register", str(data_dir / "models" / "tiny-chat.gguf"), "--id", "tiny") == 0
    assert models(data_dir, "register", str(data_dir / "models" / "tiny-chat.gguf"), "--id", "tiny") == 1
    assert "already registered" in capsys.readouterr().err
    assert models(data_dir, "remove", "nope") == 1
    assert "is not registered here" in capsys.readouterr().err
    (data_dir / "models" / "junk.gguf").write_bytes(b"not a gguf at all")
    assert models(data_dir, "register", str(data_dir / "models" / "junk.gguf")) == 1


def test_bert_folder_is_converted_with_progress(data_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("GGSTACK_PROGRESS", "1")
    assert models(data_dir, "register", str(find_minilm_dir()), "--id", "minilm") == 0
    captured = capsys.readouterr()
    assert "registered minilm (embedding" in captured.out
    final = captured.err.strip().split("\r")[-1]
    assert final.startswith("converting minilm [##############################]") and final.endswith("100%")
    assert (data_dir / "models" / "minilm.gguf").is_file()
    assert models(data_dir, "list") == 0
    assert "minilm" in capsys.readouterr().out
