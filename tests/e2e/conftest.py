"""Browser-test fixtures: the real service in a subprocess (uvicorn, temp SASFORMER_HOME, SQLite) and a
headless Debian chromium driven by Selenium through /usr/bin/chromedriver.

Nothing is downloaded: ``scripts/install_browser.sh`` (run by ``scripts/test.sh``) installs chromium and
chromium-driver from apt. Screenshots go to ``tmp/artifacts/e2e/`` (``SASFORMER_E2E_ARTIFACTS``);
with ``SASFORMER_UPDATE_SCREENSHOTS=1`` the final set is also written, shrunk, to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.served import Server, free_port

__all__ = ["REPO", "Server", "free_port", "make_driver"]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SASFORMER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SASFORMER_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("SASFORMER_E2E_ARTIFACTS", REPO / "tmp" / "artifacts" / "e2e"))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("sasformer-home"))
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def make_driver(width: int = 1400, height: int = 1100):  # -> selenium WebDriver
    """Headless chromium with everything that phones home switched off."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing: run scripts/install_browser.sh (scripts/test.sh does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sasformer-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 "--hide-scrollbars", "--force-device-scale-factor=1", "--enable-unsafe-swiftshader"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver._sasformer_profile = profile  # type: ignore[attr-defined]
    return driver


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's outcome on the item so the driver fixture can screenshot failures."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def driver(request: pytest.FixtureRequest, artifacts: Path) -> Iterator[object]:
    d = make_driver()
    try:
        yield d
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            d.save_screenshot(str(artifacts / f"FAILED-{request.node.name}.png"))
    finally:
        d.quit()
        shutil.rmtree(d._sasformer_profile, ignore_errors=True)  # type: ignore[attr-defined]
