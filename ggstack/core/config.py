"""Settings: defaults that need no file, a run-config YAML, and GGSTACK_* environment overrides.

A run-config may say `${env.VAR}` or `${env.VAR:=default}` anywhere in a value; the
substitution happens on the text before YAML parsing, so it works in any field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Ids the in-process providers use (/v1/providers); a remote provider may not take one.
INLINE_PROVIDER_IDS = frozenset({"llama-cpp", "ctransformers", "whisper-cpp", "ncnn", "remote", "chromadb",
                                 "localfs", "spans"})
ENV_REFERENCE = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)(?::=([^}]*))?\}")


class ConfigError(ValueError):
    """The run-config cannot be used; the message says which file and what."""


class ModelConfig(BaseModel):
    """A model the run-config registers at start-up."""

    identifier: str
    path: Path
    model_type: Literal["llm", "embedding", "rerank", "asr", "image"] = "llm"
    engine: Literal["llama-cpp", "ctransformers", "whisper-cpp", "ncnn"] | None = None
    context_length: int | None = None
    embedding_dimension: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


RemoteProviderType = Literal["remote::openai-compatible", "remote::vllm", "remote::llama-server", "remote::ollama"]


class RemoteModelConfig(BaseModel):
    """A model a remote provider serves, as ggstack lists it; `provider_model_id` is its name there."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    identifier: str = Field(min_length=1)
    provider_model_id: str | None = Field(None, description="The remote's name for it; default the identifier")
    model_type: Literal["llm", "embedding"] = "llm"
    context_length: int | None = Field(None, ge=8)
    embedding_dimension: int | None = Field(None, ge=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class RemoteProviderConfig(BaseModel):
    """An OpenAI-compatible inference server ggstack forwards to (vLLM, llama-server, Ollama, another ggstack)."""

    model_config = ConfigDict(extra="forbid")

    provider_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    provider_type: RemoteProviderType = "remote::openai-compatible"
    base_url: str = Field(pattern=r"^https?://", description="The OpenAI base URL, e.g. http://gpu:8000/v1")
    api_key: SecretStr | None = Field(None, description="Sent as a Bearer token")
    timeout_seconds: float = Field(60.0, gt=0, description="Longest wait for the next byte of an answer (504 past it)")
    connect_timeout_seconds: float = Field(5.0, gt=0, description="Longest wait to connect (503 past it)")
    max_concurrency: int = Field(32, ge=1, description="Requests in flight to this provider at once")
    max_queue: int = Field(64, ge=0, description="Requests waiting for one of those; past it a 429")
    retries: int = Field(2, ge=0, le=10, description="Retries of a request that never reached the remote or got "
                         "502/503 before any byte of its answer")
    models: list[RemoteModelConfig] | None = Field(None, description="Unset: discovered from the remote's model list")


class ApiKeyConfig(BaseModel):
    """A key the server accepts, kept as its SHA-256 (`ggstack hash-key` prints it)."""

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    admin: bool = Field(False, description="Sees every key's stored objects")


class Settings(BaseSettings):
    """Everything configurable. Each field can also be set as GGSTACK_<FIELD> in the environment."""

    model_config = SettingsConfigDict(env_prefix="GGSTACK_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8321
    data_dir: Path = Path.home() / ".local" / "share" / "ggstack"
    database_url: str | None = Field(None, description="SQLAlchemy URL; default a SQLite file in data_dir")
    chroma_url: str | None = Field(None, description="A Chroma server; default embedded in data_dir")
    default_models: bool = Field(True, description="Register the bundled SmolLM2 and all-MiniLM-L6-v2")
    models: list[ModelConfig] = Field(default_factory=list)
    inference_providers: list[RemoteProviderConfig] = Field(default_factory=list, description=(
        "Remote OpenAI-compatible inference servers whose models ggstack serves as its own"))
    model_dirs: list[Path] = Field(default_factory=list, description=(
        "Directories POST /v1/models may load files from; default data_dir/models"))
    max_context_factor: float = Field(1.0, gt=0, description=(
        "A model's context may be at most its trained context times this"))
    chat_completions_retention_days: float | None = Field(None, ge=0, description=(
        "Stored chat completions older than this are deleted; 0 stores none; unset keeps them"))
    files_dir: Path | None = Field(None, description=(
        "Where uploaded files' bytes live; default data_dir/files. Replicas share one (a shared filesystem)"))
    lease_seconds: float = Field(30.0, ge=0.5, description=(
        "Replicas: how long a claim on background work (a file being indexed, an eval or training job) "
        "lasts unrenewed; a dead replica's work is taken over (files) or failed (jobs) after it"))
    model_refresh_seconds: float = Field(2.0, ge=0.1, description=(
        "Replicas: how often the model registry is re-read from the database"))
    max_upload_bytes: int = 512 * 1024 * 1024
    max_json_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Largest JSON request body (413 past it)")
    api_keys: list[ApiKeyConfig] = Field(default_factory=list, description=(
        "When set (or api_key is), every route but /v1/health needs one of these keys"))
    api_key: SecretStr | None = Field(None, description=(
        "One admin key given in plain text, normally as GGSTACK_API_KEY; held only hashed"))
    allowed_hosts: list[str] = Field(default_factory=list, description=(
        "Host names the server answers besides loopback names and the bound address ('*': any)"))
    allowed_origins: list[str] = Field(default_factory=list, description=(
        "Browser origins (scheme://host:port) allowed besides loopback pages; they also get CORS ('*': any)"))
    asr_window_seconds: float = Field(300.0, ge=10.0, description="Audio decoded and transcribed per window")
    image_max_bytes: int = Field(25 * 1024 * 1024, ge=1, description="Largest image upload (Dell: < 25 MB)")
    image_max_side: int = Field(1024, ge=16, description="Largest square side Real-ESRGAN upscales")
    max_queue: int = Field(8, description="Requests one model may hold waiting before 429")
    training_window: int = Field(256, ge=256, le=8192, multiple_of=256, description=(
        "Tokens per fine-tuning step (one packed window; llama.cpp contexts come in multiples of 256)"))
    training_checkpoint_type: Literal["f32", "f16", "q8_0"] = Field("f32", description=(
        "Tensor type of fine-tuning checkpoints: f32 keeps the trained weights exactly; f16 and q8_0 "
        "requantize them (SmolLM2-135M: 515, 260 and 145 MB)"))
    search_warmup_stores: int = Field(4, ge=0, description=(
        "At start, load the search indexes (and embedding model) of this many vector stores, most recently "
        "used first, in the background; 0 turns the warm-up off"))
    search_warmup_postings_mb: int = Field(128, ge=0, description=(
        "Keyword postings the warm-up reads into memory, all stores together (the postings cache holds 256)"))
    validate_responses: bool = False
    telemetry: bool = Field(True, description="Record a span per API call for the Telemetry API")
    telemetry_max_spans: int = Field(100_000, ge=1, description="Spans kept; older ones are pruned")
    telemetry_buffer: int = Field(10_000, ge=1, description="Spans held in memory between flushes; "
                                  "past that new spans are dropped (and counted in the log)")
    health_ttl_s: float = Field(1.0, ge=0, description=(
        "GET /v1/health answers from a check at most this old (0: every probe checks again)"))
    access_log: bool = Field(False, description="uvicorn's line per request; off by default because "
                             "writing it costs the cheapest routes a third of their rate (spans record every call)")
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field("text", description=(
        "text: readable lines; json: one JSON object per line (time, level, logger, message, exception)"))

    @model_validator(mode="after")
    def _distinct_providers(self) -> Settings:
        ids = [p.provider_id for p in self.inference_providers]
        clash = sorted({i for i in ids if ids.count(i) > 1} | (set(ids) & INLINE_PROVIDER_IDS))
        if clash:
            raise ValueError(f"inference_providers: provider_id {', '.join(clash)} is taken")
        return self

    @property
    def model_directories(self) -> list[Path]:
        return self.model_dirs or [self.data_dir / "models"]

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ggstack.db'}"


def substitute_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace `${env.VAR:=default}`; a variable with no value and no default is an error."""
    environ = dict(os.environ) if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if environ.get(name):
            return environ[name]
        if default is None:
            raise ConfigError(f"environment variable {name} is not set and has no default")
        return default

    return ENV_REFERENCE.sub(replace, text)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Defaults < config file < environment < explicit overrides (the CLI's flags)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            text = substitute_env(config_file.read_text(encoding="utf-8"))
            values = yaml.safe_load(text) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read {config_file}: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{config_file} must hold a mapping of settings")
    env_values = Settings().model_dump(exclude_unset=True)
    merged = {**values, **env_values, **{k: v for k, v in overrides.items() if v is not None}}
    return Settings(**merged)
