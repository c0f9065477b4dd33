"""kill -9 during a write, then restart: what was acknowledged is all there, and nothing
half-written is visible through the API."""

from __future__ import annotations

import threading

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
