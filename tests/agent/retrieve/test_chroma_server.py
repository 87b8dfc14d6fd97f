"""TAILOR_CHROMA_URL: the same index code against a real Chroma server process."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.retrieve.index import build_index, make_client, open_collection
from agent.settings import Settings
from tests.agent.retrieve.test_index import HashEmbedder

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen([str(chroma), "run", "--path", str(tmp_path / "srv"), "--host",
                             "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("chroma server exited at start-up")
                time.sleep(0.3)
        else:
            pytest.fail("chroma server did not start within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_index_and_query_through_a_chroma_server(chroma_server, catalog, tmp_path):
    settings = Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_CHROMA_URL": chroma_server})
    client = make_client(settings)
    assert type(client).__name__ != "PersistentClient" and not (tmp_path / "index").exists()
    emb = HashEmbedder()
    assert build_index(client, catalog, emb, "tiny", log=lambda m: None)["rebuilt"]
    col = open_collection(make_client(settings), emb, "tiny")
    got = col.get(where={"g_animation": True}, include=["metadatas"])
    assert [m["item_id"] for m in got["metadatas"]] == [5]
