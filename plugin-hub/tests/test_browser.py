"""The dashboard as a person sees it: headless Chromium driven by Selenium against a real hub process.

Skipped (with the reason) where Chromium, chromedriver or Selenium is not installed; on Debian:
`apt-get install chromium chromium-driver` and `pip install selenium` (pinned in requirements/).
Set QUARK_SCREENSHOTS=<dir> to keep the screenshots it takes.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from hub_testkit import SHARED_TESTS, fast

from quark_hub.app import module as hub_module
from quark_sdk.testing import QuarkTestEnv

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900"]


def _driver(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    # The Debian launcher script wraps the real binary; selenium talks to the binary itself.
    real = Path("/usr/lib/chromium/chromium")
    options.binary_location = str(real if real.exists() else CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def _wait_for(driver: Any, css: str, timeout: float = 30) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css)), message=f"{css} never appeared")


def _screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    keep = os.environ.get("QUARK_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


async def test_dashboard_shows_a_module_docking_and_turning_unhealthy(quark: QuarkTestEnv, tmp_path: Path) -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"headless browser test needs {' and '.join(missing)} (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="headless browser test needs selenium (pip install selenium)")
    from sample.module import module as sample_module

    hub = await quark.spawn(hub_module, "quark_hub.app:module",
                            **fast(tmp_path, monitor_interval=0.3, lease_ttl=6.0, self_dock=True,
                                   stream_refresh=1.0, stream_max_seconds=60))
    driver = await asyncio.to_thread(_driver, tmp_path / "chromium-profile")
    # As `quark dev --fleet` keeps it in the data dir it shares with the hub: the page shows the supervisor.
    (tmp_path / "hubdata").mkdir(exist_ok=True)
    (tmp_path / "hubdata" / "fleet.json").write_text(json.dumps({"updated_at": time.time(), "supervisor": {
        "blog": {"state": "backoff", "pid": None, "restarts": 2, "last_exit": -9}}}))
    try:
        await asyncio.to_thread(driver.get, hub.url + "/hub")
        assert driver.title == "Quark · Plugin Hub"
        await asyncio.to_thread(_wait_for, driver, '#conn[data-state="live"]')
        row = await asyncio.to_thread(_wait_for, driver, '#supervisor tr[data-state="backoff"]')
        assert row.text.split() == ["blog", "backoff", "\u2013", "2", "-9"], row.text  # \u2013: no pid
        await asyncio.to_thread(_wait_for, driver, '[data-module="hub"] tr[data-health="healthy"]')

        sample = await quark.spawn(sample_module, "sample.module:module", pythonpath=[SHARED_TESTS],
                                   hub_url=hub.url)
        row = await asyncio.to_thread(_wait_for, driver, '[data-module="sample"] tr[data-health="healthy"]')
        assert sample.url in row.text and "healthy" in row.text.lower()
        docked_shot = await asyncio.to_thread(_screenshot, driver, tmp_path, "hub-dashboard-docked")
        assert docked_shot.stat().st_size > 10_000

        sample.kill()
        row = await asyncio.to_thread(_wait_for, driver, '[data-module="sample"] tr[data-health="unhealthy"]')
        assert "unhealthy" in row.text.lower()
        card = driver.find_element("css selector", '[data-module="sample"]')
        assert card.get_attribute("data-health") == "unhealthy"
        events = driver.find_element("css selector", "#events").text
        assert "docked" in events and "degraded → unhealthy" in events
        assert driver.find_element("css selector", "#stat-unhealthy").text == "1"
        await asyncio.to_thread(_screenshot, driver, tmp_path, "hub-dashboard-unhealthy")
        # Live updates only: the page was never reloaded.
        assert driver.execute_script("return performance.getEntriesByType('navigation').length") == 1
    finally:
        await asyncio.to_thread(driver.quit)
