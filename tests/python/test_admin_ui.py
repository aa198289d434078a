"""The admin UI at /ui, driven in headless Chromium (tests/ui/admin_ui.mjs,
through playwright-core) against a gateway with a master key, a SQLite
database and one priced `openai/gpt-4o-mini` deployment served by aimock:
sign-in (a wrong key shows the 401), a team and a key created and listed,
spend made with the new key shown in the chart, the key deleted.

The browser test skips where the system Chromium (scripts/setup.sh installs Debian's) or
tests/node_modules/playwright-core is missing, and fails instead under REQUIRE_CHROMIUM=1
(scripts/test.sh sets it in CI). With UPDATE_SCREENSHOT=1 the
run's full-page screenshot replaces docs/admin_ui.png."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, Aimock, Gateway

CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = ROOT / "tests" / "node_modules" / "playwright-core"
SCRIPT = ROOT / "tests" / "ui" / "admin_ui.mjs"
FIXTURES = ROOT / "tests" / "fixtures" / "aimock" / "openai.json"
SCREENSHOT = ROOT / "docs" / "admin_ui.png"
MASTER_KEY = "sk-test-master"

BROWSER_MISSING = (
    f"{CHROMIUM} missing (scripts/setup.sh installs it)" if not CHROMIUM.exists()
    else f"{PLAYWRIGHT} missing: npm ci --prefix tests" if not PLAYWRIGHT.exists()
    else "node missing" if shutil.which("node") is None
    else None)

# gpt-4o-mini's list price, so each call the script makes has a spend.
CONFIG = """
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: os.environ/MOCK_OPENAI_BASE
      api_key: sk-upstream
      input_cost_per_token: 0.00000015
      output_cost_per_token: 0.0000006

general_settings:
  master_key: {master_key}
  database_url: sqlite://{db}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("admin-ui")
    mock = Aimock(FIXTURES, log=tmp / "aimock.log")
    config = CONFIG.format(master_key=MASTER_KEY, db=tmp / "gw.db")
    try:
        gw = Gateway(config, tmp, env={"MOCK_OPENAI_BASE": f"{mock.url}/v1"})
    except Exception:
        mock.stop()
        raise
    yield gw
    gw.stop()
    mock.stop()


@pytest.mark.needs("REQUIRE_CHROMIUM", BROWSER_MISSING)
def test_admin_ui_in_headless_chromium(gateway, tmp_path):
    shot = tmp_path / "admin_ui.png"
    run = subprocess.run(
        ["node", str(SCRIPT), "--base", gateway.base, "--master-key", MASTER_KEY,
         "--screenshot", str(shot), "--model", "gpt-4o-mini"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    print(run.stdout)
    assert run.returncode == 0, (
        f"admin_ui.mjs exited {run.returncode}\n{run.stdout}\n{run.stderr}\n"
        f"failure screenshot: {shot}.failure.png\n"
        f"gateway log (tail):\n{gateway.log.read_text()[-3000:]}")
    assert shot.stat().st_size > 10_000, "the screenshot is nearly empty"
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


def test_ui_files_answer_with_a_self_only_csp(gateway):
    import httpx
    for path, ctype in [("/ui", "text/html"), ("/ui/", "text/html"),
                        ("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css")]:
        r = httpx.get(f"{gateway.base}{path}", timeout=10)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith(ctype), (path, r.headers["content-type"])
        assert "default-src 'self'" in r.headers["content-security-policy"], path
