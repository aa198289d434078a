"""The gateway-only build (`cargo build -p engine --no-default-features`):
the front door without libtorch, for users who want only the gateway.

It must link no libtorch, serve remote providers with the control plane on
(keys, spend logs) in well under 50 MB of memory, and refuse a local model
with a message that names the build that has one. The provider suite
(test_gateway_providers.py) runs against this build too."""
import subprocess
import time
from pathlib import Path

import httpx

from conftest import ENGINE, GATEWAY_ENGINE, ROOT, Aimock, Gateway

FIXTURES = ROOT / "tests" / "fixtures" / "aimock" / "gateway.json"
MASTER = "sk-build-master-51c2"
# Idle resident memory the gateway-only build must stay under (the full
# build idles at several hundred MB with libtorch mapped in).
IDLE_RSS_LIMIT_MIB = 50


def linked_libraries(binary: Path) -> str:
    return subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                          check=True).stdout


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def refusal(args, tmp: Path) -> subprocess.CompletedProcess:
    """Runs the gateway build with `args`; it must exit on its own."""
    return subprocess.run([str(GATEWAY_ENGINE), *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp)


def test_the_gateway_build_links_no_libtorch():
    assert "libtorch" in linked_libraries(ENGINE), "the default build should link libtorch"
    libs = linked_libraries(GATEWAY_ENGINE)
    for lib in ("libtorch", "libc10", "libnccl", "libcuda"):
        assert lib not in libs, f"{lib} linked:\n{libs}"


def test_a_local_model_in_the_config_is_refused_naming_the_build(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model_list:\n"
                      "  - model_name: remote\n"
                      "    litellm_params: {model: openai/gpt-4o, api_key: sk-x}\n"
                      "  - model_name: mine\n"
                      "    litellm_params: {model: local/smollm2}\n")
    r = refusal(["serve", "--config", str(config), "--port", "0"], tmp_path)
    assert r.returncode != 0
    assert "`mine`" in r.stderr and "local/smollm2" in r.stderr, r.stderr
    assert "gateway-only build" in r.stderr, r.stderr
    assert "cargo build --release -p engine" in r.stderr, r.stderr


def test_serving_a_model_without_a_config_is_refused_naming_the_build(tmp_path):
    r = refusal(["serve", "--port", "0"], tmp_path)
    assert r.returncode != 0
    assert "gateway-only build" in r.stderr and "--config" in r.stderr, r.stderr
    # The local engine's flags and subcommands are not in this build.
    r = refusal(["serve", "--model", "smollm2"], tmp_path)
    assert r.returncode != 0 and "--model" in r.stderr, r.stderr
    r = refusal(["generate", "--prompt", "hi"], tmp_path)
    assert r.returncode != 0 and "generate" in r.stderr, r.stderr


def test_it_serves_with_the_control_plane_in_under_50_mb(tmp_path):
    mock = Aimock(FIXTURES, log=tmp_path / "aimock.log")
    config = (f"model_list:\n"
              f"  - model_name: gpt\n"
              f"    litellm_params: {{model: openai/gpt-4o, api_base: {mock.url}/v1, "
              f"api_key: sk-upstream}}\n"
              f"general_settings:\n"
              f"  master_key: {MASTER}\n"
              f"  database_url: sqlite://{tmp_path}/gw.db\n"
              f"  proxy_batch_write_at: 1\n")
    gw = Gateway(config, tmp_path, binary=GATEWAY_ENGINE)
    try:
        admin = {"Authorization": f"Bearer {MASTER}"}
        key = httpx.post(f"{gw.base}/key/generate", headers=admin, json={"max_budget": 10},
                         timeout=30).json()["key"]
        for _ in range(20):
            r = httpx.post(f"{gw.base}/v1/chat/completions",
                           headers={"Authorization": f"Bearer {key}"}, timeout=30,
                           json={"model": "gpt", "max_tokens": 50,
                                 "messages": [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "say hello"}]})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "Hello from the mock upstream!"
        time.sleep(2)  # the spend batch is written; the server is idle
        spend = httpx.get(f"{gw.base}/key/info", params={"key": key}, headers=admin,
                          timeout=30).json()
        assert spend["info"]["spend"] > 0, spend
        rss = rss_mib(gw.proc.pid)
        print(f"gateway-only build, idle after 20 requests: RSS {rss:.1f} MiB")
        assert rss < IDLE_RSS_LIMIT_MIB, f"idle RSS {rss:.1f} MiB"
    finally:
        gw.stop()
        mock.stop()
