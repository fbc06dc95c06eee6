"""Headless-Chromium smoke test: the real `streamlit run` server, a real browser, the embedded model.

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`) and the
`selenium` package; skipped with that reason where they are missing. Nothing is installed at test
time. Screenshots go to the test's tmp_path; `MINIONS_SCREENSHOT=docs/app-minions.png` saves the
MinionS run's screenshot there instead (how docs/app-minions.png is made).
"""

from __future__ import annotations

import os
import re
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


def key_class(key: str) -> str:
    """The CSS class Streamlit gives the element of a widget with this key (its frontend's rule)."""
    return "st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip())


def set_number(driver, key: str, value: int) -> None:
    """Type `value` into the number input with this widget key ("knob.<protocol>.<Config field>":
    keys stay when labels are reworded)."""
    css = f'.{key_class(key)} input'
    box = WebDriverWait(driver, 30).until(EC.element_to_be_clickable((By.CSS_SELECTOR, css)),
                                          message=f"no number input with key {key!r}")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.ENTER)
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, css).get_attribute("value") == str(value))
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

def stop_buttons(driver) -> list:
    return [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text == "Stop"]


def source_buttons(driver) -> list:
    """The citations under an answer: buttons whose label starts with a ▸/▾ marker."""
    return [b for b in driver.find_elements(By.TAG_NAME, "button")
            if b.text.startswith(("▸", "▾"))]


def open_source(driver, i: int = 0, timeout: float = 120):
    """Click the i-th citation; return the highlighted quote on its page once it is shown."""
    button = WebDriverWait(driver, timeout).until(lambda d: (source_buttons(d) or [None] * (i + 1))[i])
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    mark = WebDriverWait(driver, timeout).until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, "mark.minions-quote")))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", mark)
    return mark


def answer_paragraphs(driver) -> list[str]:
    """The paragraphs of the last answer: the Markdown paragraphs of the last assistant message
    before its Sources."""
    msg = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"]')[-1]
    out = []
    for p in msg.find_elements(By.CSS_SELECTOR, '[data-testid="stMarkdownContainer"] p'):
        if p.text.startswith("Sources"):
            break
        out.append(p.text)
    return [t for t in out if t.strip()]


def test_ask_the_bundled_sample_and_see_a_citation_on_its_page(server: str, browser, tmp_path: Path) -> None:
    from minions.documents import load

    open_app(browser, server)
    choose(browser, "Protocol", "RAG")
    assert "Protocol: RAG" in page_text(browser)
    set_number(browser, "knob.rag.top_k", 1)
    set_number(browser, "knob.rag.remote_max_tokens", 48)
    ask(browser, "What was Northwind's total revenue in fiscal 2024?")
    text = page_text(browser)
    assert "Remote spent" in text and "Remote-only estimate" in text and "stand-in" in text
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    paragraphs = answer_paragraphs(browser)
    assert paragraphs and len(paragraphs) == len(set(paragraphs)), paragraphs  # no paragraph twice
    assert not stop_buttons(browser)                                          # the run is over
    mark = open_source(browser)
    sample = load(ROOT / "datasets" / "sample" / "northwind_annual_report.md")
    quote = " ".join(mark.text.split())
    assert len(quote) > 200 and quote in " ".join(sample.text.split())      # the retrieved chunk, marked
    assert "characters" in page_text(browser) and "the document (one page)" in page_text(browser)
    # What left this machine: the one request RAG sent, the retrieved chunk in it marked as verbatim
    toggle(browser, "What left this machine")
    sent = WebDriverWait(browser, 30).until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, "div.minions-egress mark")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "div.minions-egress")) == 1
    assert quote[:200] in " ".join(sent.text.split())
    assert sent.value_of_css_property("background-color") not in ("transparent", "rgba(0, 0, 0, 0)")  # highlighted
    shot = tmp_path / "app-rag.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_a_cited_pdf_page_is_shown_as_rendered_with_the_quote(server: str, browser, tmp_path: Path) -> None:
    pytest.importorskip("pypdfium2")
    from tests.test_documents import make_pdf

    pages = ["Acme Corporation annual report. The company sells tools to builders.",
             "Results. Revenue grew to 120 million dollars in fiscal 2024, up from 100 million.",
             "Outlook. The board approved a dividend of 0.42 per share."]
    pdf = tmp_path / "acme-report.pdf"
    pdf.write_bytes(make_pdf(pages))
    open_app(browser, server)
    browser.find_element(By.XPATH, '//label[.//p[text()="Upload files"]]').click()
    wait_for(browser, '[data-testid="stFileUploader"] input[type="file"]').send_keys(str(pdf))
    WebDriverWait(browser, 60).until(lambda d: "acme-report · 3 pages" in page_text(d))
    choose(browser, "Protocol", "RAG")
    set_number(browser, "knob.rag.chunk_size", 100)
    set_number(browser, "knob.rag.top_k", 1)
    set_number(browser, "knob.rag.remote_max_tokens", 32)
    ask(browser, "How much did revenue grow in fiscal 2024?")
    quote = " ".join(open_source(browser).text.split())
    page = next(i for i, text in enumerate(pages, 1) if quote and quote in text)  # the cited chunk's page
    image = WebDriverWait(browser, 60).until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, '[data-testid="stImage"] img, [data-testid="stFullScreenFrame"] img')))
    assert image.size["width"] > 300 and image.size["height"] > 300
    text = page_text(browser)
    assert f"Page {page}\n" in text + "\n" and f"page {page} of 3" in text
    assert "could not be located" not in text  # the quote was painted on the page image


def test_minions_run_screenshot_for_the_docs(server: str, browser, tmp_path: Path) -> None:
    """A MinionS run on the bundled sample with a citation opened on its page: the screenshot the
    README shows. Saved to the test's tmp_path; `MINIONS_SCREENSHOT=docs/app-minions.png` saves it
    there instead (how docs/app-minions.png is refreshed)."""
    open_app(browser, server)
    for knob, value in {"max_rounds": 1, "tasks_per_round": 1, "chunk_size": 2000, "local_max_tokens": 128,
                        "remote_max_tokens": 160}.items():
        set_number(browser, f"knob.minions.{knob}", value)
    ask(browser, "What was Northwind's total revenue in fiscal 2024?")
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert answer_paragraphs(browser) and not stop_buttons(browser)
    browser.set_window_size(1440, 2300)
    toggle(browser, "Documents")  # fold the document picker
    if source_buttons(browser):
        open_source(browser)
    out = ROOT / os.environ["MINIONS_SCREENSHOT"] if os.environ.get("MINIONS_SCREENSHOT") else tmp_path / "app.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(out)) and out.stat().st_size > 10_000
