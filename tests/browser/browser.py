"""Headless Chromium for the end-to-end tests, driven by Selenium.

Debian's chromium and chromium-driver (installed by .ci/run), never a
browser or driver that Selenium would download: the driver path is given
and Selenium Manager is told to stay offline. The flags keep Chromium from
calling home (this machine has no network but the package registries).
"""

from __future__ import annotations

import os
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("CUSTODY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CUSTODY_CHROMEDRIVER", "/usr/bin/chromedriver")


def start(width: int = 1280, height: int = 1600) -> webdriver.Chrome:
    """A fresh headless Chromium with an empty profile and its console log kept."""
    os.environ["SE_OFFLINE"] = "true"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="custody-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        # The console's self-signed test CA is not in the system store.
        "--ignore-certificate-errors",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """Console messages at error level since the last call (Chromium clears on read)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def alert_text(driver: webdriver.Chrome) -> str | None:
    """The text of an open alert/confirm/prompt, or None: a script from a log ran if not None."""
    try:
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
        return text
    except Exception:  # NoAlertPresentException and friends
        return None
