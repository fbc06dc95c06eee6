"""Headless-Chromium smoke test: the real `streamlit run` server, a real browser, the embedded model.

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`) and the
`selenium` package; skipped with that reason where they are missing. Nothing is installed at test
time. Screenshots go to the test's tmp_path. `MINIONS_SCREENSHOT=docs/app-minions.png` also runs
MinionS and saves the screenshot the docs show (how docs/app-minions.png was made).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install selenium")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "streamlit_app.py"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1440,2000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser(tmp_path: Path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


# --- driving Streamlit's widgets ------------------------------------------------------------------

def wait_for(driver, css: str, timeout: float = 60):
    return WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def choose(driver, label: str, option: str) -> None:
    """Pick `option` (visible text, prefix) in the selectbox labelled `label`."""
    box = next(b for b in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]')
               if b.text.startswith(label))
    box.find_element(By.CSS_SELECTOR, "input").click()
    item = WebDriverWait(driver, 20).until(lambda d: next(
        (o for o in d.find_elements(By.CSS_SELECTOR, '[role="option"]') if o.text.startswith(option)), None))
    item.click()
    settle(driver)


def set_number(driver, label: str, value: int) -> None:
    field = wait_for(driver, f'input[aria-label="{label}"]', 30)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.ENTER)
    WebDriverWait(driver, 20).until(lambda d: d.find_element(
        By.CSS_SELECTOR, f'input[aria-label="{label}"]').get_attribute("value") == str(value))
    settle(driver)


def settle(driver, timeout: float = 60) -> None:
    """Wait until the script run a widget change started has finished."""
    time.sleep(0.5)
    WebDriverWait(driver, timeout).until_not(
        lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'))


def ask(driver, question: str, timeout: float = 600) -> None:
    area = wait_for(driver, '[data-testid="stChatInputTextArea"]')
    WebDriverWait(driver, 30).until(lambda d: area.is_enabled())
    area.send_keys(question, Keys.ENTER)
    try:  # every finished turn ends with its run-log download button
        wait_for(driver, '[data-testid="stDownloadButton"]', timeout)
    except TimeoutException:
        driver.save_screenshot("/tmp/minions-app-timeout.png")
        raise
    settle(driver, timeout)


def toggle(driver, title: str) -> None:
    """Open or close the expander (or st.status) whose header contains `title`."""
    header = next(h for h in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stExpander"] summary')
                  if title in h.text)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", header)
    header.click()
    time.sleep(1.5)  # the expand animation moves everything below it


def page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def open_app(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, '[data-testid="stChatInputTextArea"]', 90)
    wait_for(driver, '[data-testid="stSidebar"]')
    settle(driver)
    assert "pages" in page_text(driver) or "page" in page_text(driver)  # the bundled sample is loaded


# --- tests ----------------------------------------------------------------------------------------

def test_ask_the_bundled_sample_in_a_real_browser(server: str, browser, tmp_path: Path) -> None:
    open_app(browser, server)
    choose(browser, "Protocol", "RAG")
    assert "Protocol: RAG" in page_text(browser)
    set_number(browser, "Chunks retrieved", 1)
    set_number(browser, "Remote max tokens", 48)
    ask(browser, "What was Northwind's total revenue in fiscal 2024?")
    text = page_text(browser)
    assert "Remote spent" in text and "Remote-only estimate" in text and "stand-in" in text
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    shot = tmp_path / "app-rag.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


@pytest.mark.skipif(not os.environ.get("MINIONS_SCREENSHOT"),
                    reason="set MINIONS_SCREENSHOT=docs/app-minions.png to refresh the docs screenshot")
def test_minions_run_screenshot_for_the_docs(server: str, browser) -> None:
    open_app(browser, server)
    for label, value in {"Max rounds": 1, "Tasks per round": 2, "Max local jobs per round": 4,
                         "Local max tokens": 96, "Remote max tokens": 200}.items():
        set_number(browser, label, value)
    ask(browser, "What was Northwind's total revenue in fiscal 2024?")
    browser.set_window_size(1440, 2300)
    for title in ("Documents", "Answered in"):  # fold the document picker, open the live log
        toggle(browser, title)
    out = ROOT / os.environ["MINIONS_SCREENSHOT"]
    out.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(out))
