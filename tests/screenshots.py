"""`make screenshots`: the docs' pictures of the pages, taken from the demo's own output.

    python -m tests.screenshots [--out docs/screenshots] [--home DIR] [--business flights]

Runs `make demo` (the default one: the churn business, its normal and drifted phases) in a
fresh ONEBOX_HOME -- or uses `--home`, where a demo already ran -- then `make serve` on a
free port, and photographs each page in Debian's chromium at 1280 px wide, as a newcomer
sees it after the quick start: the landing page, the try-it page with an answer and its
reasons, the same page with a scored CSV file, the reports index, the top of the drifted
phase's drift report, and the champion's model card.  Nothing here is a test fixture: the
figures on the pictures are the demo's.  It lives beside the tests (tests/browser.py,
tests/test_quickstart.py's `make serve` runner) and outside what ships.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests import browser
from tests.test_demo import BUSINESS_SETTINGS
from tests.test_quickstart import ctrl_c, make_serve

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1280, 800


def run_demo(home: Path, business: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in BUSINESS_SETTINGS}
    subprocess.run([sys.executable, "-m", "operations.demo",
                    *(["--business", business] if business else [])],
                   env={**env, "ONEBOX_HOME": str(home), "PREFECT_HOME": str(home / "prefect")},
                   cwd=ROOT, check=True)


def shoot(chrome: object, out: Path, name: str, *, whole: bool = True) -> None:
    """`name`.png: the whole page, or only the first screen of it (a drift report is
    thousands of pixels of Evidently's detail)."""
    path = out / f"{name}.png"
    if whole:
        os.environ["ONEBOX_SCREENSHOTS"] = str(out)
        browser.save_screenshot(chrome, name)
    else:
        chrome.save_screenshot(str(path))  # type: ignore[attr-defined]
    print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def wait_shown(chrome: object, element_id: str, timeout: float = 60) -> None:
    """Until the element is displayed (the page's script has shown an answer)."""
    deadline = time.monotonic() + timeout
    while not chrome.find_element("id", element_id).is_displayed():  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise SystemExit(f"#{element_id} not shown on {chrome.current_url}")  # type: ignore[attr-defined]
        time.sleep(0.5)


def photograph(url: str, home: Path, out: Path) -> None:
    reports = home / "reports"
    with browser.open_browser() as chrome:
        chrome.set_window_size(WIDTH, HEIGHT)  # type: ignore[attr-defined]
        chrome.get(f"{url}/")  # type: ignore[attr-defined]
        browser.wait_for_text(chrome, "onebox")
        shoot(chrome, out, "landing")

        chrome.get(f"{url}/try")  # type: ignore[attr-defined]
        browser.wait_for_text(chrome, "Try the model")
        time.sleep(1)  # the form is built from /model
        chrome.find_element("id", "predict").click()  # type: ignore[attr-defined]
        wait_shown(chrome, "result")
        time.sleep(1)
        shoot(chrome, out, "try-page")
        # A CSV file of five of the demo's own rows, their outcome column left out.
        table = next((home / "data").glob("*.csv"))
        lines = table.read_text().splitlines()
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as sample:
            sample.write("\n".join(lines[:6]) + "\n")
        chrome.find_element("id", "csv-file").send_keys(sample.name)  # type: ignore[attr-defined]
        chrome.find_element("id", "csv-submit").click()  # type: ignore[attr-defined]
        wait_shown(chrome, "csv-result")
        time.sleep(1)
        shoot(chrome, out, "try-page-csv")
        os.unlink(sample.name)

        chrome.get(f"{url}/reports/")  # type: ignore[attr-defined]
        browser.wait_for_text(chrome, "drift")
        shoot(chrome, out, "reports-index")

        drifted = sorted(reports.glob("drift-*.html"))[-1]  # the demo's second phase
        chrome.get(f"{url}/reports/{drifted.name}")  # type: ignore[attr-defined]
        time.sleep(3)  # Evidently draws with its own script
        shoot(chrome, out, "drift-report", whole=False)

        card = sorted((reports / "models").glob("*.html"))[-1]
        chrome.get(f"{url}/reports/models/{card.name}")  # type: ignore[attr-defined]
        browser.wait_for_text(chrome, "Intended use")
        shoot(chrome, out, "model-card")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--home", type=Path, default=None,
                        help="an ONEBOX_HOME where `make demo` already ran (default: run it)")
    parser.add_argument("--business", default=None, help="the demo business (default churn)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="onebox-screenshots-") as tmp:
        home = args.home
        if home is None:
            home = Path(tmp) / "home"
            print("make demo (in a fresh ONEBOX_HOME)...", flush=True)
            run_demo(home, args.business)
        with make_serve(home.resolve(), *(["--business", args.business]
                                          if args.business else [])) as serve:
            serve.wait_ready()
            print(f"make serve on {serve.url}; the pictures:", flush=True)
            photograph(serve.url, home.resolve(), args.out.resolve())
            ctrl_c(serve)


if __name__ == "__main__":
    main()
