"""Shared fixtures: a real `engine serve --model smollm2` process on a free
port, started once per test session, and clients for it."""
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The debug build that `cargo test` makes (opt-level 1, dependencies 2);
# ENGINE_BIN picks another (e.g. target/release/engine).
ENGINE = Path(os.environ.get("ENGINE_BIN", ROOT / "target" / "debug" / "engine"))
SERVER_START_TIMEOUT = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, proc: subprocess.Popen, log: Path) -> None:
    import httpx
    deadline = time.time() + SERVER_START_TIMEOUT
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"engine did not become healthy:\n{log.read_text()[-4000:]}")


class Server:
    def __init__(self, extra_args=(), tmp: Path = None):
        if not ENGINE.exists():
            raise RuntimeError(f"{ENGINE} missing: cargo build -p engine -p workers --bins")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = (tmp or Path("/tmp")) / f"engine-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(ENGINE), "serve", "--model", "smollm2", "--host", "127.0.0.1",
             "--port", str(self.port), "--max-model-len", "2048", *extra_args],
            cwd=ROOT, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        wait_healthy(self.base, self.proc, self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = Server(tmp=tmp_path_factory.mktemp("engine"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI
    return OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="session")
def expected_smollm2():
    path = ROOT / "tests" / "fixtures" / "generated" / "smollm2_expected.json"
    if not path.exists():
        pytest.fail(f"{path} missing: run scripts/fixtures/llama_parity.py")
    return json.loads(path.read_text())
