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
# The gateway-only build (`cargo build -p engine --no-default-features`: no
# libtorch), which scripts/test.sh builds and saves under this name.
GATEWAY_ENGINE = Path(os.environ.get(
    "GATEWAY_BIN", ROOT / "target" / "debug" / "engine-gateway"))
SERVER_START_TIMEOUT = 180


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "needs(env, missing): skip for `missing` (why a service is absent, None when "
        "present), or fail when the environment variable `env` is 1 (scripts/test.sh "
        "sets REQUIRE_POSTGRES, REQUIRE_REDIS, REQUIRE_CHROMIUM under CI)")


def pytest_runtest_setup(item):
    """Applies `needs` marks before any fixture starts a process: a test
    whose service is missing skips on a developer machine, but fails in CI,
    where a skip would be a green run that checked nothing."""
    for mark in item.iter_markers("needs"):
        env, missing = mark.args
        if missing is None:
            continue
        if os.environ.get(env) == "1":
            pytest.fail(f"{missing}, and {env}=1 requires it", pytrace=False)
        pytest.skip(missing)


def reachable(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


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
    def __init__(self, extra_args=(), tmp: Path = None, model="smollm2", env=None):
        if not ENGINE.exists():
            raise RuntimeError(f"{ENGINE} missing: cargo build -p engine -p workers --bins")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = (tmp or Path("/tmp")) / f"engine-{self.port}.log"
        # 2048 unless the test sets its own (a tiny KV cache must, since the
        # server refuses one that cannot hold a max_model_len sequence).
        model_len = [] if "--max-model-len" in extra_args else ["--max-model-len", "2048"]
        self.proc = subprocess.Popen(
            [str(ENGINE), "serve", "--model", model, "--host", "127.0.0.1",
             "--port", str(self.port), *model_len, *extra_args],
            cwd=ROOT, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
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
def batch_invariant_server(tmp_path_factory):
    """A second session server with `--batch-invariant` (f32 weights, the
    per-sequence attention reference): what the tests that pin a request's
    output bit for bit run against."""
    s = Server(["--batch-invariant"], tmp=tmp_path_factory.mktemp("engine-invariant"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def batch_invariant_client(batch_invariant_server):
    from openai import OpenAI
    return OpenAI(base_url=f"{batch_invariant_server.base}/v1", api_key="unused",
                  max_retries=0, timeout=300)


@pytest.fixture(scope="session")
def expected_smollm2():
    path = ROOT / "tests" / "fixtures" / "generated" / "smollm2_expected.json"
    if not path.exists():
        pytest.fail(f"{path} missing: run scripts/fixtures/llama_parity.py")
    return json.loads(path.read_text())


AIMOCK_CLI = ROOT / "tests" / "node_modules" / "@copilotkit" / "aimock" / "dist" / "cli.js"


class Aimock:
    """`@copilotkit/aimock` (the pinned third-party mock of the providers'
    wire formats) on a free port over `fixtures`, with extra CLI flags
    (chaos rates)."""

    def __init__(self, fixtures: Path, extra_args=(), log: Path = None):
        if not AIMOCK_CLI.exists():
            raise RuntimeError(f"{AIMOCK_CLI} missing: npm ci --prefix tests")
        self.log = log or Path(f"/tmp/aimock-{os.getpid()}.log")
        self.proc = subprocess.Popen(
            ["node", str(AIMOCK_CLI), "--port", "0", "--log-level", "info",
             "--fixtures", str(fixtures), *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # A reader thread keeps draining aimock's output (so it never blocks
        # on a full pipe) and hands over the "listening on URL" line.
        import queue
        import threading
        urls = queue.Queue()
        threading.Thread(target=self._drain, args=(urls,), daemon=True).start()
        try:
            self.url = urls.get(timeout=30)
        except queue.Empty:
            self.proc.kill()
            raise RuntimeError(f"aimock did not start within 30 s: see {self.log}")

    def _drain(self, urls):
        with open(self.log, "a") as f:
            for line in self.proc.stdout:
                f.write(line)
                f.flush()
                if "listening on " in line:
                    urls.put(line.split("listening on ", 1)[1].strip().rstrip("/"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Gateway:
    """`engine serve --config <config>`: the gateway alone (no local model
    unless the config names one), on a free port, once healthy."""

    def __init__(self, config_text: str, tmp: Path, env=None, extra_args=(), binary=ENGINE):
        if not binary.exists():
            raise RuntimeError(f"{binary} missing: scripts/test.sh builds it (cargo build -p "
                               "engine, with --no-default-features for the gateway-only build)")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp / f"config-{self.port}.yaml"
        self.config.write_text(config_text)
        self.log = tmp / f"gateway-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--config", str(self.config), "--host", "127.0.0.1",
             "--port", str(self.port), *extra_args],
            cwd=ROOT, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
        wait_healthy(self.base, self.proc, self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
