"""A headless Debian chromium driven by selenium, for the page tests (``scripts/browser_up.sh`` installs both).

:func:`start` returns a driver, or raises :class:`BrowserUnavailable` with the reason (the tests skip with it).
Chromium runs with no network features (no QUIC, no background fetches, no component update, no sync) and a
fresh profile folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]


class BrowserUnavailable(RuntimeError):
    pass


def ensure_installed() -> None:
    """Install chromium, chromium-driver (apt, as root) and selenium (pip) when missing."""
    import sys

    have = shutil.which("chromium") and shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        have = False
    if have:
        return
    res = subprocess.run(["bash", str(ROOT / "scripts" / "browser_up.sh"), sys.executable], capture_output=True,
                         text=True, timeout=900)
    if res.returncode != 0:
        raise BrowserUnavailable(f"scripts/browser_up.sh failed ({res.returncode}): {res.stderr.strip()[-400:]}")


def start():
    ensure_installed()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or ""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    except Exception as err:
        shutil.rmtree(profile, ignore_errors=True)
        raise BrowserUnavailable(f"chromium did not start: {type(err).__name__}: {str(err).splitlines()[0][:300]}") from err
    driver._profile_dir = profile  # removed by stop()
    return driver


def stop(driver) -> None:
    profile = getattr(driver, "_profile_dir", None)
    driver.quit()
    if profile:
        shutil.rmtree(profile, ignore_errors=True)


def severe_console_messages(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


if __name__ == "__main__":  # python tests/chromium_driver.py PAGE.html SHOT.png [WIDTH HEIGHT]
    import sys

    d = start()
    try:
        w, h = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1400, 1000)
        d.set_window_size(w, h)
        d.get(Path(sys.argv[1]).resolve().as_uri())
        d.save_screenshot(sys.argv[2])
        print(severe_console_messages(d) or "no console errors", os.path.getsize(sys.argv[2]))
    finally:
        stop(d)
