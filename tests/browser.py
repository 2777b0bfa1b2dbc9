"""A real headless browser for tests: Debian's chromium, driven by Selenium through
Debian's chromedriver (nothing downloaded).

    with browser.open_browser(basic_auth=("admin", "pw"), insecure=True) as chrome:
        chrome.get(url)
        browser.wait_for_text(chrome, "churn-classifier")

`basic_auth` sends the people's login on every request the page makes (the front door's
nginx asks for it), through Chrome's DevTools protocol: a browser would ask the person
once and send it on every request of the site alike.  `insecure` accepts a self-signed
certificate (the stack's own, at first start).  Chromium runs with a fresh profile and
the flags that keep it off the network (this machine's closed network refuses the
background connections it would otherwise try).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,900",
)


class BrowserMissing(RuntimeError):
    pass


def _find(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    raise BrowserMissing(f"none of {', '.join(names)} is installed: apt-get install chromium "
                         "chromium-driver (make test-prereqs)")


@contextmanager
def open_browser(*, basic_auth: tuple[str, str] | None = None,
                 insecure: bool = False) -> Iterator[object]:
    """A headless chromium under Selenium; quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _find("chromium", "/usr/bin/chromium", "chromium-browser")
    for flag in FLAGS:
        options.add_argument(flag)
    if insecure:
        options.add_argument("--ignore-certificate-errors")
        options.accept_insecure_certs = True
    with tempfile.TemporaryDirectory(prefix="onebox-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        service = Service(executable_path=_find("chromedriver", "/usr/bin/chromedriver"))
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.set_page_load_timeout(60)
            if basic_auth is not None:
                token = base64.b64encode(":".join(basic_auth).encode()).decode()
                driver.execute_cdp_cmd("Network.enable", {})
                driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                                       {"headers": {"Authorization": f"Basic {token}"}})
            yield driver
        finally:
            driver.quit()


def wait_for_text(driver: object, text: str, timeout: float = 30.0) -> str:
    """The page's text once it shows `text` (its scripts have fetched their data)."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = driver.find_element("tag name", "body").text  # type: ignore[attr-defined]
        if text in seen:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not on {driver.current_url} within {timeout:.0f} s; "  # type: ignore[attr-defined]
                         f"it shows: {seen[:1500]!r}")


def save_screenshot(driver: object, name: str) -> Path | None:
    """The whole page as `name`.png in ONEBOX_SCREENSHOTS (the README's pictures: make
    screenshots); nothing when that variable is unset."""
    folder = os.environ.get("ONEBOX_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    # The whole page, not the window: Chrome's DevTools capture beyond the viewport.
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]  # type: ignore[attr-defined]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {  # type: ignore[attr-defined]
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
