"""Run-config loading: env substitution, precedence, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggstack.core.config import ConfigError, load_settings, substitute_env


def test_env_reference_with_default_uses_the_default_when_unset() -> None:
    assert substitute_env("port: ${env.GG_PORT:=9000}", {}) == "port: 9000"


def test_env_reference_uses_the_variable_when_set() -> None:
    assert substitute_env("port: ${env.GG_PORT:=9000}", {"GG_PORT": "7000"}) == "port: 7000"


def test_env_reference_without_default_and_unset_is_an_error() -> None:
    with pytest.raises(ConfigError, match="GG_URL"):
        substitute_env("url: ${env.GG_URL}", {})


def test_empty_default_gives_null(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GG_CHROMA", raising=False)
    config = tmp_path / "run.yaml"
    config.write_text("chroma_url: ${env.GG_CHROMA:=}\nport: 8500\n")
    settings = load_settings(config)
    assert settings.chroma_url is None and settings.port == 8500


def test_flags_override_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GGSTACK_PORT", "8600")
    config = tmp_path / "run.yaml"
    config.write_text("port: 8500\n")
    assert load_settings(config).port == 8600
    assert load_settings(config, port=8700).port == 8700


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("prot: 8500\n")
    with pytest.raises(Exception, match="prot"):
        load_settings(config)


def test_defaults_need_no_file() -> None:
    settings = load_settings(None)
    assert settings.port == 8321 and settings.sqlalchemy_url.startswith("sqlite:///")
