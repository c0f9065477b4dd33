"""kill -9 during a write, then restart: what was acknowledged is all there, and nothing
half-written is visible through the API."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
import time
from collections.abc import Iterator

import httpx

from tests.server import Server


def test_kill_during_upload_keeps_acknowledged_files_and_shows_no_partial_one(tmp_path):
    server = Server(tmp_path / "data").start()
    kept = {}
    for i in range(3):
        data = f"file {i}\n".encode() * 1000
        uploaded = httpx.post(f"{server.url}/v1/files", files={"file": (f"f{i}.txt", data)},
                              data={"purpose": "assistants"})
        assert uploaded.status_code == 200
        kept[uploaded.json()["id"]] = data
    sending = threading.Event()
    release = threading.Event()

    def body():
        yield (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
               b'--b\r\nContent-Disposition: form-data; name="file"; filename="half.bin"\r\n\r\n')
        yield b"x" * 256 * 1024
        sending.set()
        release.wait(30)
        yield b"y" * 1024 + b"\r\n--b--\r\n"

    def upload() -> None:
        try:
            httpx.post(f"{server.url}/v1/files", content=body(), timeout=30,
                       headers={"content-type": "multipart/form-data; boundary=b"})
        except httpx.TransportError:
            pass  # the server died under it

    client = threading.Thread(target=upload)
    client.start()
    try:
        assert sending.wait(30)
        server.kill()
    finally:
        release.set()
        client.join(30)

    again = Server(tmp_path / "data").start()
    try:
        listed = httpx.get(f"{again.url}/v1/files").json()["data"]
        assert {f["id"] for f in listed} == set(kept)
        for file_id, data in kept.items():
            assert httpx.get(f"{again.url}/v1/files/{file_id}/content").content == data
    finally:
        again.stop()


def test_kill_during_registrations_keeps_acknowledged_models_and_starts_again(tmp_path, tiny_embed_gguf):
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    shutil.copy(tiny_embed_gguf, models / "emb.gguf")
    server = Server(tmp_path / "data").start()
    acknowledged: list[str] = []
    attempted: list[str] = []
    stop = threading.Event()

    def register(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for n in itertools.count():
                if stop.is_set():
                    return
                model_id = f"emb-{worker}-{n}"
                attempted.append(model_id)
                try:
                    answer = http.post("/v1/models", json={"model_id": model_id, "model_type": "embedding",
                                                          "provider_model_id": "emb.gguf"})
                except httpx.TransportError:
                    return  # the server died under it
                assert answer.status_code == 200, answer.text
                acknowledged.append(model_id)

    workers = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    try:
        while len(acknowledged) < 12 and all(w.is_alive() for w in workers):
            time.sleep(0.01)
        server.kill()  # registrations are in flight on four connections
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert len(acknowledged) >= 12

    again = Server(tmp_path / "data").start()
    try:
        listed = {m["identifier"] for m in httpx.get(f"{again.url}/v1/models").json()["data"]}
        assert set(acknowledged) <= listed <= set(attempted)
        # whatever is listed is whole: the first and last acknowledged and any that landed
        # unacknowledged (the kill came before the answer) answer and embed
        for model_id in {acknowledged[0], acknowledged[-1], *(listed - set(acknowledged))}:
            answer = httpx.post(f"{again.url}/v1/embeddings", json={"model": model_id, "input": "x"}, timeout=60)
            assert answer.status_code == 200, (model_id, answer.text)
            assert httpx.get(f"{again.url}/v1/models/{model_id}").json()["provider_resource_id"] == "emb.gguf"
    finally:
        again.stop()
        assert not again.mismatches(), "\n".join(again.mismatches())


def turn_events(http: httpx.Client, path: str, body: dict) -> Iterator[dict]:
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line[len("data: "):])["event"]["payload"]


def test_kill_during_an_agent_turn_keeps_finished_turns_and_shows_no_half_turn(tmp_path, tiny_chat_gguf):
    config = {"models": [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"}]}
    server = Server(tmp_path / "data", config=config).start()
    agent = {"model": "tiny", "instructions": "Talk.",
             "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 400}}
    with httpx.Client(base_url=server.url, timeout=120) as http:
        agent_id = http.post("/v1/agents", json={"agent_config": agent}).json()["agent_id"]
        session_id = http.post(f"/v1/agents/{agent_id}/session", json={"session_name": "s"}).json()["session_id"]
        turns = f"/v1/agents/{agent_id}/session/{session_id}/turn"
        done = http.post(turns, json={"messages": [{"role": "user", "content": "first"}]})
        assert done.status_code == 200, done.text
        finished = done.json()
        try:
            for event in turn_events(http, turns, {"messages": [{"role": "user", "content": "second"}]}):
                if event["event_type"] == "step_progress":
                    server.kill()  # the second turn is generating
                    break
        except httpx.TransportError:
            pass
    assert server.process.poll() is not None, "the turn ended before it could be interrupted"

    again = Server(tmp_path / "data", config=config).start()
    try:
        with httpx.Client(base_url=again.url, timeout=120) as http:
            session = http.get(f"/v1/agents/{agent_id}/session/{session_id}").json()
            assert session["turns"][0] == finished
            # the interrupted turn is either nowhere or whole, never half-written
            assert all(t["output_message"] and t["completed_at"] and t["steps"] for t in session["turns"])
            assert len(session["turns"]) == 1 or session["turns"][1]["input_messages"][0]["content"] == "second"
            after = http.post(turns, json={"messages": [{"role": "user", "content": "third"}]})
            assert after.status_code == 200, after.text
            listed = http.get(f"/v1/agents/{agent_id}/session/{session_id}").json()["turns"]
            assert listed[0] == finished and listed[-1]["turn_id"] == after.json()["turn_id"]
    finally:
        again.stop()
        assert not again.mismatches(), "\n".join(again.mismatches())
