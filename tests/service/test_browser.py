"""The instructor's pages in a real headless Chromium against a real uvicorn server and Postgres:
log in with the token, open the overview, see the right podium, keep screenshots (desktop and phone)
in test-artifacts/.

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package; skips without them."""

from __future__ import annotations

import os
import shutil
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.db import create_db_engine, create_session_factory
from tests.service.helpers import REPO_ROOT, Process, free_port, fresh_database, pg_available, wait_for
from tests.service.test_web import PODIUM, seed_course

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO_ROOT / "test-artifacts"
PHONE = (390, 844)
DESKTOP = (1280, 900)


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (apt-get install {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install selenium)"
    return None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """uvicorn serving the app on a fresh, seeded database; yields its URL and the course."""
    if (reason := _missing()) is not None:
        pytest.skip(reason)
    if not pg_available():
        pytest.skip("Postgres at 127.0.0.1:5432 is not reachable")
    with fresh_database("hwgrade_web") as db_url:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "HWGRADE_ENV": "test",
            "HWGRADE_HOME": str(tmp_path / "home"),
            "HWGRADE_DATABASE_URL": db_url,
            "HWGRADE_DEVICE": "cpu",
        }
        settings = Settings(env="test", home=tmp_path / "home", database_url=db_url, device="cpu")
        settings.prepare_dirs()
        engine = create_db_engine(db_url)
        try:
            with create_session_factory(engine)() as session:
                course = seed_course(session, settings)
        finally:
            engine.dispose()
        port = free_port()
        cmd = [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory"]
        proc = Process([*cmd, "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "uvicorn.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _healthy(url, proc), 30, "uvicorn to answer /healthz")
            yield {"url": url, **course}
        except BaseException:
            print(proc.log_tail(80))
            raise
        finally:
            proc.stop()


def _healthy(url: str, proc: Process) -> bool:
    if not proc.alive():
        raise AssertionError(f"uvicorn exited:\n{proc.log_tail(80)}")
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container; the page is our own
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--lang=zh-CN",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def full_page_screenshot(driver: Any, path: Path, width: int, min_height: int) -> Path:
    """The whole page: grow the window to the document's height, shoot, and restore it."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, max(min_height, min(height + 120, 5000)))
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path))
    driver.set_window_size(width, min_height)
    return path


def test_login_overview_podium_and_screenshots(server: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url = server["url"]
    browser.get(f"{url}/ui/")
    # Logged out: the overview sends us to the login form.
    WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "token")))
    assert "/ui/login" in browser.current_url and "教师登录" in browser.page_source

    browser.find_element(By.ID, "token").send_keys(server["token"])
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, "ol.podium")))
    assert browser.current_url == f"{url}/ui/"
    cookie = browser.get_cookie("hwgrade_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    card = browser.find_element(By.CSS_SELECTOR, 'section[data-slug="phone-price"]')
    places = card.find_elements(By.CSS_SELECTOR, "ol.podium > li")
    assert [p.get_attribute("data-rank") for p in places] == ["1", "2", "3"]
    assert [p.find_element(By.CSS_SELECTOR, ".name").text for p in places] == [name for name, _ in PODIUM]
    assert [p.find_element(By.CSS_SELECTOR, ".score").text for p in places] == ["97.00%", "95.50%", "93.00%"]
    assert "1st" in places[0].text and "第一名" in places[0].text

    desktop = full_page_screenshot(browser, ARTIFACTS / "overview-desktop.png", *DESKTOP)
    assert desktop.stat().st_size > 20_000
    assert png_size(desktop)[0] == DESKTOP[0]

    # A phone: the same podium, readable without sideways scrolling.
    browser.set_window_size(*PHONE)
    browser.get(f"{url}/ui/")
    WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, "ol.podium")))
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    names = browser.find_elements(By.CSS_SELECTOR, 'section[data-slug="phone-price"] ol.podium .name')
    assert [n.text for n in names] == [name for name, _ in PODIUM]
    phone = full_page_screenshot(browser, ARTIFACTS / "overview-phone.png", *PHONE)
    assert phone.stat().st_size > 20_000
    assert png_size(phone)[0] == PHONE[0]

    # The winner's report: follow the podium link; the confusion matrix is drawn.
    browser.find_element(
        By.CSS_SELECTOR, 'section[data-slug="phone-price"] ol.podium .place-1 a.link'
    ).click()
    WebDriverWait(browser, 10).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, ".chart.confusion svg"))
    )
    assert browser.current_url == f"{url}/ui/submissions/{server['subs'][PODIUM[0][0]].id}"
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    full_page_screenshot(browser, ARTIFACTS / "report-phone.png", *PHONE)

    browser.set_window_size(*DESKTOP)
    browser.get(f"{url}/ui/assignments/phone-price")
    WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".histogram svg")))
    full_page_screenshot(browser, ARTIFACTS / "assignment-desktop.png", *DESKTOP)

    # Logging out ends the session.
    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "token")))
    browser.get(f"{url}/ui/eligibility")
    WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "token")))
    assert "/ui/login" in browser.current_url


def test_artifacts_folder_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    import subprocess

    out = subprocess.run(
        ["git", "check-ignore", "-q", "test-artifacts/overview-desktop.png"], cwd=REPO_ROOT, check=False
    )
    assert out.returncode == 0, "test-artifacts/ must stay out of git (.gitignore)"
