"""What a caller of `POST /v1/models` may register: a file under the model directories, run
with engine options inside fixed bounds.

Registration loads a file from the server's disk, so without a fence any client could make
the server open any file, and learn from the answer whether it exists. Every refusal here
says the same thing for "missing", "outside" and "not a file", and names only what the
caller sent. Paths are compared after resolving symlinks and `..`, so neither leads out; an
operator who keeps models elsewhere adds that directory to `model_dirs`.

Models from the run config are the operator's own and are not fenced, but their options get
the same bounds: a typo there should fail at start, not exhaust memory at first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ggstack.core.errors import InvalidValueError

INT_OPTIONS = ("n_ctx", "n_batch", "n_threads", "n_threads_batch", "max_queue", "parallel")
BOOL_OPTIONS = ("flash_attn", "use_mmap")
LLAMA_CPP_OPTIONS = frozenset({*INT_OPTIONS, *BOOL_OPTIONS, "pooling"})
THREAD_OPTIONS = ("n_threads", "n_threads_batch")
MAX_QUEUE_OPTION = 1024
MAX_PARALLEL_OPTION = 64  # slots per chat model; each costs one context's KV cache
#: When the file does not say its trained context, no model asks for more than this.
UNKNOWN_CONTEXT_CAP = 131_072


class ModelDirs:
    """The directories registrations may name files in, resolved once."""

    def __init__(self, dirs: Iterable[Path]) -> None:
        self.dirs = [Path(d).expanduser().resolve() for d in dirs]

    def inside(self, path: Path) -> Path | None:
        """The model directory holding `path` (after resolving it), or None."""
        resolved = Path(path).resolve()
        return next((d for d in self.dirs if resolved.is_relative_to(d)), None)

    def find(self, name: str) -> Path:
        """The file `name` names: relative to a model directory (first match), or absolute inside one."""
        candidates = [Path(name)] if Path(name).is_absolute() else [d / name for d in self.dirs]
        for candidate in candidates:
            try:
                resolved = candidate.resolve()
                if self.inside(resolved) is not None and resolved.is_file():
                    return resolved
            except (ValueError, OSError):  # a NUL byte or a name the file system cannot encode: no file
                continue
        raise InvalidValueError(f"model file '{name}' is not in the server's model directories "
                                "(model_dirs in the run config)", field="path")

    def display(self, path: Path) -> str:
        """What a client may see of a model's path: relative to its model directory, or only the name."""
        home = self.inside(path)
        return Path(path).resolve().relative_to(home).as_posix() if home is not None else Path(path).name


def bounded_options(options: Mapping[str, Any], *, engine: str, context_length: int | None,
                    trained_context: int | None, context_factor: float) -> None:
    """Refuse options of the wrong type or past their bounds (InvalidValueError naming the key)."""
    if engine == "llama-cpp":
        unknown = sorted(set(options) - LLAMA_CPP_OPTIONS)
        if unknown:
            raise InvalidValueError(f"unknown llama-cpp option(s): {', '.join(unknown)}", field="options")
    for key in INT_OPTIONS:
        if key in options and (isinstance(options[key], bool) or not isinstance(options[key], int)
                               or options[key] < 1):
            raise InvalidValueError(f"options.{key} must be a positive integer", field=f"options.{key}")
    for key in BOOL_OPTIONS:
        if key in options and not isinstance(options[key], bool):
            raise InvalidValueError(f"options.{key} must be true or false", field=f"options.{key}")
    if "pooling" in options and not isinstance(options["pooling"], str):
        raise InvalidValueError("options.pooling must be a string", field="options.pooling")
    cores = os.cpu_count() or 1
    for key in THREAD_OPTIONS:
        if options.get(key, 0) > cores:
            raise InvalidValueError(f"options.{key} {options[key]} is more than this machine's {cores} cores",
                                    field=f"options.{key}")
    if options.get("max_queue", 0) > MAX_QUEUE_OPTION:
        raise InvalidValueError(f"options.max_queue may be at most {MAX_QUEUE_OPTION}", field="options.max_queue")
    if options.get("parallel", 0) > MAX_PARALLEL_OPTION:
        raise InvalidValueError(f"options.parallel may be at most {MAX_PARALLEL_OPTION}", field="options.parallel")
    ceiling = int(trained_context * context_factor) if trained_context else UNKNOWN_CONTEXT_CAP
    for key, value in (("context_length", context_length), ("options.n_ctx", options.get("n_ctx")),
                       ("options.n_batch", options.get("n_batch"))):
        if value is not None and value > ceiling:
            raise InvalidValueError(f"{key} {value} is more than this model allows ({ceiling}: its trained "
                                    f"context x max_context_factor {context_factor})", field=key)
