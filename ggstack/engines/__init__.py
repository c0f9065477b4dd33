"""Inference engines: the Protocols handlers use (`base`), the llama.cpp worker engines and the model registry.

Handlers import from `ggstack.engines.base` only; `registry.ModelRegistry` hands out engines.
"""

import os

# OpenMP threads that finish their share of a llama.cpp batch spin while they wait for the
# next; on a machine with other busy processes the spinners take the cores the others need,
# and a 2-thread encoder fell from 230 to 44 inputs/s (docs/benchmarks.md). Passive waiting
# costs about 5% on an idle machine. libgomp reads this once, when llama.cpp is loaded, so
# it is set here, before any engine module can import llama_cpp; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
