"""The console's real page in headless Chromium: Debian's ``chromium`` and ``chromium-driver``, driven
by Selenium.

The console serves the integration suite's engine (the pytest plugin's ``sandbox_stack``) from a
thread, on a free port of 127.0.0.1. Without Chromium or its driver the browser tests are skipped
with one line saying what to install; SANDBOX_REQUIRE_BROWSER=1 (CI) turns that skip into a
failure. Screenshots of the order page go to SANDBOX_SCREENSHOTS_DIR when it is set (`make
screenshots` sets it to docs/images).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from sandbox.console.server import ConsoleServer
from sandbox.engine import find_free_port
from sandbox.settings import Settings
from sandbox.waiting import wait_until

# The integration suite's engine and fixtures, reused as they are.
from tests.integration.conftest import api, engine_settings, stack  # noqa: F401

BROWSERS = ("chromium", "chromium-browser")
DRIVER = "chromedriver"
WINDOW = (1440, 1000)
PAGE_WAIT = 30.0  # a saga ends in well under a second; the first orders of a session pay cold starts

_outcomes: dict[str, str] = {}
_summary: dict[str, float] = {}
figures: dict[str, str] = {}  # measured by the tests, printed in the summary line
_unavailable_reasons: set[str] = set()


def is_required() -> bool:
    return os.environ.get("SANDBOX_REQUIRE_BROWSER") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip with the reason, or fail where the browser tests are required (CI)."""
    if is_required():
        pytest.fail(f"{reason} (SANDBOX_REQUIRE_BROWSER=1: browser tests must run here)", pytrace=False)
    _unavailable_reasons.add(reason)
    pytest.skip(reason)


def find_browser() -> tuple[str, str]:
    """Chromium and its WebDriver, as Debian installs them."""
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = shutil.which(DRIVER)
    if browser is None or driver is None:
        missing = " and ".join(
            name for name, path in (("chromium", browser), ("chromium-driver", driver)) if not path
        )
        unavailable(
            f"no {missing}: the browser tests need Debian's chromium and chromium-driver (apt-get install)"
        )
    return browser, driver


def browser_version(browser: str) -> str:
    result = subprocess.run([browser, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return " ".join(result.stdout.split()[:2]) or "chromium"  # "Chromium 156.0.8078.108"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = find_browser()
    figures.setdefault("browser", browser_version(binary))
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    # The driver's path is given: Selenium looks for nothing on the network.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def console_url(engine_settings: Settings) -> Iterator[str]:  # noqa: F811
    server = ConsoleServer(engine_settings, find_free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def call(
    url: str, method: str = "GET", body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    """One request to the console: (status, parsed JSON body)."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class ConsolePage:
    """The console's page in the browser, as a person uses it."""

    def __init__(self, driver: Any, url: str):
        self.driver = driver
        self.url = url

    def find(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def find_all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def wait(self, check: Any, what: str, timeout: float = PAGE_WAIT) -> Any:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        def attempt() -> Any:
            try:
                return check()
            except (NoSuchElementException, StaleElementReferenceException):
                return None

        return wait_until(attempt, timeout=timeout, what=what, interval=0.05, max_interval=0.1)

    def open(self) -> None:
        self.driver.set_window_size(*WINDOW)
        self.driver.get(self.url)
        self.wait(lambda: self.find("#live").text == "live", "the page's live event stream")

    def fill(self, **fields: str | bool) -> None:
        """Fill the order form: selects by value, text fields, checkboxes."""
        from selenium.webdriver.support.ui import Select

        for name, value in fields.items():
            element = self.find(f'[name="{name}"]')
            if element.tag_name == "select":
                Select(element).select_by_value(str(value))
            elif element.get_attribute("type") == "checkbox":
                if element.is_selected() != bool(value):
                    element.click()
            else:
                self.driver.execute_script("arguments[0].value = arguments[1]", element, str(value))

    def submit(self) -> tuple[str | None, str]:
        """Submit the order form: (the accepted order's id or None, what the page answered)."""
        result = self.find("#place-result")
        before = result.get_attribute("data-order-id")
        self.find("#place-button").click()

        def answered() -> tuple[str | None, str] | None:
            order_id = result.get_attribute("data-order-id")
            if order_id and order_id != before:
                return order_id, result.text
            if "is-error" in (result.get_attribute("class") or ""):
                return None, result.text
            return None

        answer: tuple[str | None, str] = self.wait(answered, "the order form's answer")
        return answer

    def place(self, **fields: str | bool) -> str:
        """Fill the form with ``fields``, place the order; its id."""
        self.fill(**fields)
        order_id, text = self.submit()
        assert order_id is not None, f"the page refused the order: {text}"
        return order_id

    def row(self, order_id: str) -> Any:
        return self.find(f'#order-list li[data-order-id="{order_id}"]')

    def wait_for_status(self, order_id: str, statuses: tuple[str, ...] = ("COMPLETED", "FAILED")) -> str:
        return str(
            self.wait(
                lambda: (status := self.row(order_id).get_attribute("data-status")) in statuses and status,
                f"order {order_id} to show {' or '.join(statuses)} in the list",
            )
        )

    def click(self, selector: str, what: str) -> None:
        """Click what ``selector`` finds; the live page may redraw it meanwhile, so try again then."""
        self.wait(lambda: self.find(selector).click() or True, what)

    def open_order(self, order_id: str) -> None:
        self.click(f'#order-list li[data-order-id="{order_id}"]', f"order {order_id} in the list")
        self.wait(
            lambda: (
                self.find("#graph").get_attribute("data-order-id") == order_id
                and self.find("#graph").get_attribute("data-saga-status") in ("SUCCEEDED", "FAILED")
            ),
            f"the graph of order {order_id} with its saga ended",
        )

    def node(self, state: str) -> dict[str, Any]:
        """A state of the graph: its outcome, attempts, place in the path and text (read at once:
        the page redraws the graph as the order moves)."""
        found: dict[str, Any] = self.driver.execute_script(
            """const node = document.querySelector(`#graph .sg-node[data-state="${arguments[0]}"]`);
            return node && {outcome: node.dataset.outcome, attempts: Number(node.dataset.attempts),
              sequence: Number(node.dataset.sequence),
              text: Array.from(node.querySelectorAll("text"), (text) => text.textContent).join(" ")};""",
            state,
        )
        assert found, f"the graph has no state {state}"
        return found

    def text_of(self, selector: str) -> str:
        return str(
            self.driver.execute_script("return document.querySelector(arguments[0]).textContent", selector)
        )

    def select_state(self, state: str) -> str:
        self.click(f'#graph .sg-node[data-state="{state}"]', f"{state} in the graph")
        return str(
            self.wait(
                lambda: "invocations" in (text := self.text_of("#state-detail")) and text,
                f"{state}'s details",
            )
        )

    def timeline(self) -> list[tuple[str, str]]:
        rows = self.driver.execute_script(
            """return Array.from(document.querySelectorAll("#timeline tr[data-kind]"),
                (row) => [row.dataset.kind, row.dataset.name]);"""
        )
        return [(kind, name) for kind, name in rows]

    def screenshot(self, name: str) -> Path | None:
        """The whole page as docs/images/NAME.png, when SANDBOX_SCREENSHOTS_DIR asks for it."""
        folder = os.environ.get("SANDBOX_SCREENSHOTS_DIR")
        if not folder:
            return None
        path = Path(folder) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        height, chrome = self.driver.execute_script(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
        )
        self.driver.set_window_size(WINDOW[0], max(WINDOW[1], int(height) + int(chrome)))
        try:
            self.driver.save_screenshot(str(path))
        finally:
            self.driver.set_window_size(*WINDOW)
        return path


@pytest.fixture(scope="session")
def console_figures() -> dict[str, str]:
    """Figures a test measured, for the summary line (this module's own dict: a test importing the
    module may get a second copy of it)."""
    return figures


@pytest.fixture
def page(browser: Any, console_url: str) -> ConsolePage:
    console_page = ConsolePage(browser, console_url)
    console_page.open()
    return console_page


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skip for want of Chromium is reported from here: pytest folds them into one line."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix("Skipped: ")
        if reason in _unavailable_reasons:
            report.longrepr = (__file__, None, f"Skipped: {reason}")  # type: ignore[assignment]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count this folder's tests and time, for the line CI checks (see pytest_terminal_summary)."""
    if not report.nodeid.startswith("tests/browser/"):
        return
    _summary["duration_s"] = _summary.get("duration_s", 0.0) + report.duration
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, "passed")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand the figures its tests measured to the controller, which prints the line."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["browser_figures"] = dict(figures)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: called on the controller as each worker ends
def pytest_testnodedown(node: Any, error: object) -> None:
    figures.update(getattr(node, "workeroutput", {}).get("browser_figures", {}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "duration_s" not in _summary or hasattr(terminalreporter.config, "workerinput"):
        return  # an xdist worker counts nothing for the line: the controller gets every report
    outcomes = list(_outcomes.values())
    counts = ", ".join(f"{outcomes.count(key)} {key}" for key in ("passed", "failed", "skipped"))
    measured = "; ".join(f"{key} {value}" for key, value in figures.items() if key != "browser")
    terminalreporter.write_line(
        f"browser tests ({figures.get('browser', 'no browser')}): {counts}; {_summary['duration_s']:.1f}s in all"
        + (f"; {measured}" if measured else "")
    )


def now_ms() -> float:
    return time.time() * 1000
