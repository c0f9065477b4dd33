"""llama.cpp's trainer, reached through ctypes: one optimizer step per context window.

llama-cpp-python 0.3.36 binds `llama_opt_init` and `llama_opt_epoch` but its
`llama_opt_params` lacks the `optimizer_type` field the bundled llama.cpp reads, and it binds
none of `ggml_opt_dataset_*` / `ggml_opt_result_*` (they live in the bundled libggml-base).
So this module declares the few it needs against those libraries, as llama.cpp's
`examples/training/finetune.cpp` uses them, and reimplements the `common/` helpers (not in the
shared libraries) in Python: `common_opt_dataset_init` becomes `Trainer._dataset`, and
`common_opt_lr_pars` becomes a `ggml_opt_optimizer_params` struct we own, read by ggml's own
`ggml_opt_get_constant_optimizer_params` (a ctypes callback cannot return a struct by value).

What llama.cpp's trainer is, at this version (measured, see docs/training.md):
- full-parameter only: `llama_opt_init` marks every layer tensor trainable (the token embeddings
  stay frozen: a FIXME upstream); there is no LoRA training API;
- the loss is next-token cross-entropy on every position of a window: labels are dense
  (`idata_split` splits datapoints into train/eval, not tokens); a `Trainer(masked=True)` limits
  it to answer tokens through the scheduler's eval callback (`ggstack.training.masking`);
- weights must be writable floats: the model is loaded without mmap or repacked buffers, from
  an F32 copy (`dequantize`); the K/V cache is F32 (OUT_PROD has no F16 path);
- one window is `n_ctx` tokens with n_batch = n_ubatch = n_ctx, so that the K and V projections
  get gradients (llama.cpp warns they do not otherwise); llama.cpp rounds n_ctx up to 256.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggstack.core.errors import InvalidValueError, UnavailableError
from ggstack.training.masking import AnswerMask, Ggml

GGML_TYPE_F32 = 0
GGML_TYPE_I32 = 26
#: llama_ftype values a file can be converted to: f32 to train on, and checkpoint types.
CHECKPOINT_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}
LLAMA_LOAD_MODE_NONE = 0
#: ggml_opt_optimizer_type
OPTIMIZERS = {"adamw": 0, "adam": 0, "sgd": 1}
#: llama.cpp pads a context to a multiple of this, so a window is at least this long.
WINDOW_QUANTUM = 256


class _AdamW(ctypes.Structure):
    _fields_ = [("alpha", ctypes.c_float), ("beta1", ctypes.c_float), ("beta2", ctypes.c_float),
                ("eps", ctypes.c_float), ("wd", ctypes.c_float)]


class _SGD(ctypes.Structure):
    _fields_ = [("alpha", ctypes.c_float), ("wd", ctypes.c_float)]


class OptimizerParams(ctypes.Structure):
    """ggml_opt_optimizer_params (ggml-opt.h)."""

    _fields_ = [("adamw", _AdamW), ("sgd", _SGD)]


class _OptParams(ctypes.Structure):
    """llama_opt_params as the bundled llama.h declares it (with `optimizer_type`)."""

    _fields_ = [("n_ctx_train", ctypes.c_uint32), ("param_filter", ctypes.c_void_p),
                ("param_filter_ud", ctypes.c_void_p), ("get_opt_pars", ctypes.c_void_p),
                ("get_opt_pars_ud", ctypes.c_void_p), ("optimizer_type", ctypes.c_int)]


class _Native:
    """The C functions, declared once per process."""

    def __init__(self) -> None:
        from llama_cpp import llama_cpp

        self.llama = llama_cpp
        lib = llama_cpp._lib
        base = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
        self.base = base
        self.ggml: Ggml | None = None  # the layout-checked ggml functions answer-only loss needs
        vp, i64 = ctypes.c_void_p, ctypes.c_int64
        self.opt_init = _declare(lib.llama_opt_init, [vp, vp, _OptParams], None)
        self.opt_epoch = _declare(lib.llama_opt_epoch, [vp, vp, vp, vp, i64, vp, vp], None)
        self.save = _declare(lib.llama_model_save_to_file, [vp, ctypes.c_char_p], None)
        self.dataset_init = _declare(base.ggml_opt_dataset_init, [ctypes.c_int, ctypes.c_int, i64, i64, i64, i64], vp)
        self.dataset_free = _declare(base.ggml_opt_dataset_free, [vp], None)
        self.dataset_data = _declare(base.ggml_opt_dataset_data, [vp], vp)
        self.dataset_labels = _declare(base.ggml_opt_dataset_labels, [vp], vp)
        self.tensor_data = _declare(base.ggml_get_data, [vp], vp)
        self.result_init = _declare(base.ggml_opt_result_init, [], vp)
        self.result_free = _declare(base.ggml_opt_result_free, [vp], None)
        self.result_reset = _declare(base.ggml_opt_result_reset, [vp], None)
        self.result_loss = _declare(base.ggml_opt_result_loss, [vp, ctypes.POINTER(ctypes.c_double),
                                                                ctypes.POINTER(ctypes.c_double)], None)
        self.default_optimizer = _declare(base.ggml_opt_get_default_optimizer_params, [vp], OptimizerParams)
        self.constant_optimizer = ctypes.cast(base.ggml_opt_get_constant_optimizer_params, vp).value
        self.filter_all = ctypes.cast(lib.llama_opt_param_filter_all, vp).value


def _declare(func: Any, argtypes: list[Any], restype: Any) -> Any:
    func.argtypes = argtypes
    func.restype = restype
    return func


_native: _Native | None = None
_native_lock = threading.Lock()


def native() -> _Native:
    global _native
    with _native_lock:
        if _native is None:
            _native = _Native()
        return _native


def answer_mask() -> AnswerMask:
    n = native()
    with _native_lock:
        if n.ggml is None:
            n.ggml = Ggml(n.base)
    return AnswerMask(n.ggml, n.llama.ggml_backend_sched_eval_callback)


def dequantize(source: Path, target: Path, *, threads: int) -> None:
    """Write an all-F32 copy of a GGUF: llama.cpp's own quantizer, asked for ALL_F32, reads every
    tensor type it can run (Q4_0/Q4_1/Q8_0, K-quants, F16...) and writes floats; no Python loop
    over blocks."""
    convert(source, target, "f32", threads=threads)


def convert(source: Path, target: Path, file_type: str, *, threads: int) -> None:
    """llama.cpp's quantizer from any type it reads to `file_type` (a CHECKPOINT_TYPES key); it
    copies every metadata key."""
    lib = native().llama
    params = lib.llama_model_quantize_default_params()
    params.ftype = CHECKPOINT_TYPES[file_type]
    params.allow_requantize = True
    params.nthread = threads
    if lib.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params)) != 0:
        raise UnavailableError(f"llama.cpp could not convert {source.name} to {file_type}")


@dataclass(frozen=True)
class Hyper:
    """What a step runs with; `lr` changes per step (warmup), the rest is fixed for a job."""

    optimizer: str = "adamw"
    lr: float = 1e-5
    weight_decay: float = 0.0


class Trainer:
    """An F32 model and a training context; not thread-safe: one caller at a time, any thread.

    `masked`: every step and evaluation takes the window's answer flags (which labels count) and
    the loss, its gradient and the reported value are the mean over answer tokens only."""

    def __init__(self, path: Path, *, window: int, threads: int, hyper: Hyper, masked: bool = False) -> None:
        self._n = native()
        lib = self._n.llama
        self.window = window
        self._mask = answer_mask() if masked else None
        model_params = lib.llama_model_default_params()
        model_params.load_mode = LLAMA_LOAD_MODE_NONE  # the optimizer writes the weights in place
        model_params.use_extra_bufts = False           # repacked weights are not trainable
        self._model = lib.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise UnavailableError(f"llama.cpp could not load {path.name} for training")
        params = lib.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = window
        params.n_outputs_max = params.n_outputs_max_per_seq = window  # every position has a label
        params.n_threads = params.n_threads_batch = threads
        params.type_k = params.type_v = GGML_TYPE_F32
        if self._mask is not None:
            params.cb_eval = self._mask.callback
        self._ctx = lib.llama_init_from_model(self._model, params)
        if not self._ctx:
            lib.llama_model_free(self._model)
            raise UnavailableError("llama.cpp could not create a training context")
        self._pars = self._n.default_optimizer(None)
        self._pars.adamw.wd = self._pars.sgd.wd = hyper.weight_decay
        self.set_lr(hyper.lr)
        self._n.opt_init(self._ctx, self._model, _OptParams(
            0, self._n.filter_all, None, self._n.constant_optimizer, ctypes.addressof(self._pars),
            OPTIMIZERS[hyper.optimizer]))
        self._result = self._n.result_init()
        if self._mask is not None:
            self._install_callback()

    def _install_callback(self) -> None:
        """llama.cpp hands cb_eval to its scheduler only when it builds a decode graph, and
        `llama_opt_init` replaced the scheduler, which `llama_opt_epoch` then uses as it is: so
        one decode now (a whole window: a training context decodes nothing shorter)."""
        lib = self._n.llama
        tokens = (ctypes.c_int32 * self.window)()
        if lib.llama_decode(self._ctx, lib.llama_batch_get_one(tokens, self.window)) != 0:
            self.close()
            raise UnavailableError("llama.cpp could not run the decode that installs the answer-only loss")

    def set_lr(self, lr: float) -> None:
        """Read by ggml at the next optimizer step (the struct is the callback's userdata)."""
        self._pars.adamw.alpha = self._pars.sgd.alpha = lr

    def step(self, tokens: Sequence[int], answer: Sequence[bool] | None = None) -> float:
        """One forward + backward + optimizer step on a window; its mean token loss (over the
        labels `answer` flags, tokens[1:], when masked)."""
        return self._run(tokens, answer, train=True)

    def evaluate(self, tokens: Sequence[int], answer: Sequence[bool] | None = None) -> float:
        """Forward only: the window's mean token loss with the current weights."""
        return self._run(tokens, answer, train=False)

    def save(self, path: Path) -> None:
        self._n.save(self._model, str(path).encode())

    def close(self) -> None:
        lib = self._n.llama
        if self._result:
            self._n.result_free(self._result)
            self._result = None
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            lib.llama_model_free(self._model)
            self._model = None

    def _run(self, tokens: Sequence[int], answer: Sequence[bool] | None, *, train: bool) -> float:
        if len(tokens) != self.window + 1:
            raise InvalidValueError(f"a training window holds {self.window + 1} tokens, got {len(tokens)}")
        if (answer is None) != (self._mask is None):
            raise ValueError("answer flags go with a masked trainer, and only with one")
        if self._mask is not None and answer is not None:
            if len(answer) != self.window:
                raise ValueError(f"a window has {self.window} labels, got {len(answer)} answer flags")
            self._mask.arm(tokens[1:], answer)
        dataset = self._dataset(tokens)
        try:
            # one datapoint: idata_split 1 trains on it, 0 only evaluates it
            self._n.opt_epoch(self._ctx, dataset, self._result if train else None,
                              None if train else self._result, 1 if train else 0, None, None)
            loss, unc = ctypes.c_double(), ctypes.c_double()
            self._n.result_loss(self._result, ctypes.byref(loss), ctypes.byref(unc))
        finally:
            self._n.dataset_free(dataset)
            self._n.result_reset(self._result)
        if self._mask is not None:
            loss.value = self._mask.check()
        if not math.isfinite(loss.value):
            raise InvalidValueError("training diverged (the loss is no longer a finite number); "
                                    "try a lower learning rate")
        return float(loss.value)

    def _dataset(self, tokens: Sequence[int]) -> int:
        """common_opt_dataset_init for one window: data = tokens[:-1], labels = tokens[1:]."""
        n = self._n
        dataset = n.dataset_init(GGML_TYPE_I32, GGML_TYPE_I32, self.window, self.window, 1, 1)
        data = (ctypes.c_int32 * self.window).from_address(n.tensor_data(n.dataset_data(dataset)))
        labels = (ctypes.c_int32 * self.window).from_address(n.tensor_data(n.dataset_labels(dataset)))
        data[:] = list(tokens[:-1])
        labels[:] = list(tokens[1:])
        return dataset

