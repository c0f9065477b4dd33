"""Loss on the answer tokens only, without rebuilding llama.cpp's training graph.

`llama_opt_epoch` puts a one-hot label on every position of a window and ggml's cross-entropy
is the mean over all of them. Its backward node, CROSS_ENTROPY_LOSS_BACK(dloss, logits, labels),
writes dLoss/dlogits, one row of n_vocab per position, each already divided by the number of
positions. The training graph runs through the llama context's ggml_backend_sched, whose eval
callback may ask for any node: the scheduler then computes up to that node, hands it over, and
only afterwards runs the rest of the backward pass and the optimizer step. So, in that callback:

- at CROSS_ENTROPY_LOSS (forward, in training and in evaluation graphs) the logits are read and
  the mean cross-entropy over the answer positions is computed here, in float64: the loss a job
  reports;
- at CROSS_ENTROPY_LOSS_BACK the rows of prompt positions are zeroed and the answer rows scaled by
  positions/answers, which makes the gradient exactly that of the mean over answer positions.

The tensors are host memory (CPU backend; checked). `ggml_tensor` is declared here as ggml.h has
it at the pinned version and checked at start against a probe tensor built by ggml itself (name,
data, strides, the op number and source order of a CROSS_ENTROPY_LOSS_BACK node), so a layout
change fails loudly instead of writing into the wrong memory. An error inside the callback stops
the graph (the scheduler cancels the compute, so neither the rest of the backward pass nor the
optimizer step runs) and is raised by `check` after llama.cpp returns.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

from ggstack.core.errors import UnavailableError

GGML_MAX_DIMS = 4
GGML_MAX_SRC = 10
GGML_MAX_OP_PARAMS = 64
GGML_MAX_NAME = 64
GGML_TYPE_F32 = 0


class GgmlTensor(ctypes.Structure):
    """struct ggml_tensor (ggml/include/ggml.h of the bundled llama.cpp)."""

    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * GGML_MAX_DIMS), ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
                ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * GGML_MAX_SRC),
                ("view_src", ctypes.c_void_p), ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p),
                ("name", ctypes.c_char * GGML_MAX_NAME), ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


class Ggml:
    """The few libggml-base functions the layout check and the callback use."""

    def __init__(self, base: ctypes.CDLL) -> None:
        vp = ctypes.c_void_p
        self.op_name = _declare(base.ggml_op_name, [ctypes.c_int], ctypes.c_char_p)
        self.init = _declare(base.ggml_init, [_InitParams], vp)
        self.free = _declare(base.ggml_free, [vp], None)
        self.new_2d = _declare(base.ggml_new_tensor_2d, [vp, ctypes.c_int, ctypes.c_int64, ctypes.c_int64], vp)
        self.new_1d = _declare(base.ggml_new_tensor_1d, [vp, ctypes.c_int, ctypes.c_int64], vp)
        self.set_name = _declare(base.ggml_set_name, [vp, ctypes.c_char_p], vp)
        self.get_name = _declare(base.ggml_get_name, [vp], vp)
        self.nbytes = _declare(base.ggml_nbytes, [vp], ctypes.c_size_t)
        self.loss_back = _declare(base.ggml_cross_entropy_loss_back, [vp, vp, vp, vp], vp)
        self.is_host = _declare(base.ggml_backend_buffer_is_host, [vp], ctypes.c_bool)
        self.loss_op, self.loss_back_op = self._op("CROSS_ENTROPY_LOSS"), self._op("CROSS_ENTROPY_LOSS_BACK")
        self._check_layout()

    def _op(self, name: str) -> int:
        """The enum value, read from ggml's own names rather than counted from the header."""
        for value in range(1024):
            found = self.op_name(value)
            if found == name.encode():
                return value
            if found is None or found == b"":
                break
        raise UnavailableError(f"this ggml has no {name} operation; answer-only loss is unavailable")

    def _check_layout(self) -> None:
        """A probe graph in a no-alloc ggml context, compared field by field with what ggml says."""
        ctx = self.init(_InitParams(1 << 16, None, True))
        try:
            logits, labels = self.new_2d(ctx, GGML_TYPE_F32, 7, 3), self.new_2d(ctx, GGML_TYPE_F32, 7, 3)
            self.set_name(logits, b"probe-logits")
            back = self.loss_back(ctx, self.new_1d(ctx, GGML_TYPE_F32, 1), logits, labels)
            probe, node = tensor(logits), tensor(back)
            laid_out = (probe.type == GGML_TYPE_F32 and list(probe.ne) == [7, 3, 1, 1]
                        and list(probe.nb) == [4, 28, 84, 84] and probe.name == b"probe-logits"
                        and ctypes.addressof(probe) + GgmlTensor.name.offset == self.get_name(logits)
                        and self.nbytes(logits) == 84 and node.op == self.loss_back_op
                        and node.src[1] == logits and node.src[2] == labels)
        finally:
            self.free(ctx)
        if not laid_out:
            raise UnavailableError("ggml_tensor's layout is not the one ggstack declares; answer-only loss is "
                                   "unavailable with this llama.cpp build")


def _declare(func: Any, argtypes: list[Any], restype: Any) -> Any:
    func.argtypes = argtypes
    func.restype = restype
    return func


def tensor(address: int) -> GgmlTensor:
    return GgmlTensor.from_address(address)


class AnswerMask:
    """The eval callback of one training context: `arm` before each llama.cpp call with the
    window's labels and which of them are answer tokens, `check` after it."""

    def __init__(self, ggml: Ggml, callback_type: Any) -> None:
        """`callback_type`: the binding's CFUNCTYPE for ggml_backend_sched_eval_callback, the type
        of llama_context_params.cb_eval."""
        self._ggml = ggml
        self._labels = np.zeros(0, dtype=np.int64)
        self._answer = np.zeros(0, dtype=bool)
        self.loss: float | None = None
        self._error: str | None = None
        self.callback = callback_type(self._on_node)  # kept alive as long as the context uses it

    def arm(self, labels: Sequence[int], answer: Sequence[bool]) -> None:
        self._labels = np.asarray(labels, dtype=np.int64)
        self._answer = np.asarray(answer, dtype=bool)
        if not self._answer.any():
            raise ValueError("a masked window needs at least one answer label")
        self.loss, self._error = None, None

    def check(self) -> float:
        """The answer-token loss of the graph just run; raises what went wrong inside it."""
        if self._error is not None:
            raise UnavailableError(f"answer-only loss failed inside llama.cpp's graph: {self._error}")
        if self.loss is None:
            raise UnavailableError("llama.cpp ran no cross-entropy node through the eval callback")
        return self.loss

    def _on_node(self, address: int, ask: bool, _: Any) -> bool:
        node = tensor(address)
        if ask:
            return node.op in (self._ggml.loss_op, self._ggml.loss_back_op)
        try:
            if node.op == self._ggml.loss_op:
                self.loss = self._answer_loss(self._rows(node.src[0]))
            else:
                self._mask_gradient(self._rows(address))
        except Exception as exc:  # noqa: BLE001 - must not cross the C boundary; stops the graph
            self._error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def _rows(self, address: int) -> np.ndarray:
        """A [positions, n_vocab] float32 view of a host tensor (no copy: writes reach ggml)."""
        t = tensor(address)
        n_vocab, positions = t.ne[0], t.ne[1]
        if t.type != GGML_TYPE_F32 or t.nb[0] != 4 or t.nb[1] != 4 * n_vocab or t.ne[2] != 1 or t.ne[3] != 1:
            raise ValueError(f"unexpected tensor layout {list(t.ne)} / {list(t.nb)}")
        if positions != len(self._answer):
            raise ValueError(f"the graph has {positions} positions, the mask {len(self._answer)}")
        if not t.buffer or not self._ggml.is_host(t.buffer):
            raise ValueError("the tensor is not in host memory")
        flat = (ctypes.c_float * (n_vocab * positions)).from_address(t.data)
        return np.ctypeslib.as_array(flat).reshape(positions, n_vocab)

    def _answer_loss(self, logits: np.ndarray) -> float:
        """Mean of log-sum-exp minus the label's logit over the answer rows; the exponentials in
        float32 (shifted by the row's maximum), their sums and the rest in float64."""
        rows = logits[self._answer]
        top = rows.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(rows - top).sum(axis=1, dtype=np.float64)) + top[:, 0]
        picked = rows[np.arange(len(rows)), self._labels[self._answer]]
        return float((log_norm - picked).mean())

    def _mask_gradient(self, grad: np.ndarray) -> None:
        """ggml divided every row by the number of positions; make it the mean over answers
        (in place: these rows are what the rest of the backward pass reads)."""
        grad[~self._answer] = 0.0
        scale = np.float32(len(self._answer) / int(self._answer.sum()))
        np.multiply(grad, scale, out=grad, where=self._answer[:, None])
