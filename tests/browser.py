"""A real headless browser for tests: Debian's chromium renders a page, scripts and all.

`render(url)` returns the DOM after the page's scripts ran (what a person would see as
text); `screenshot(url, path)` saves a PNG.  Chromium runs with a fresh profile and the
flags that keep it off the network (this machine's closed network refuses the background
connections it would otherwise try).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,900",
)


class BrowserMissing(RuntimeError):
    pass


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissing("no headless browser: apt-get install chromium (make test-prereqs)")


def _run(url: str, *extra: str, wait_ms: int, timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="onebox-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}",
             f"--virtual-time-budget={wait_ms}", *extra, url],
            capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed on {url} ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def render(url: str, *, wait_ms: int = 15_000, timeout: float = 120) -> str:
    """The page's DOM once its scripts have run (and fetched their data) for `wait_ms`."""
    return _run(url, "--dump-dom", wait_ms=wait_ms, timeout=timeout)


def screenshot(url: str, path: Path, *, wait_ms: int = 15_000, timeout: float = 120) -> Path:
    _run(url, f"--screenshot={path}", wait_ms=wait_ms, timeout=timeout)
    return path
