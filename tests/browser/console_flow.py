"""Drives the collector console like a responder: log in, read the
dashboard, open an incident with the form, read its page until the host's
bundle is stored, verify it from the page and read the custody trail,
switch language.

    console_flow.py BASE_URL NAME PASSWORD INCIDENT_ID HOSTS REASON [--screenshot-dir DIR]

Prints one JSON object with what each page showed (the same checks as
check_page.py on every page: alerts, `window.__custody_pwned`, foreign
elements, console errors, requests outside the page). The Rust test
decides what is right; this script only acts and looks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from selenium.webdriver.common.by import By

import browser
from check_page import FOREIGN


def look(driver, name: str, shots: str | None) -> dict:
    time.sleep(0.5)
    view = {
        "url": driver.current_url,
        "title": driver.title,
        "lang": driver.execute_script("return document.documentElement.lang"),
        "text": driver.execute_script("return document.body ? document.body.innerText : ''"),
        "foreign_elements": driver.execute_script(
            f"return Array.from(document.querySelectorAll({json.dumps(FOREIGN)})).map(e => e.outerHTML.slice(0, 200))"
        ),
        "pwned": driver.execute_script("return window.__custody_pwned !== undefined"),
        "alert": browser.alert_text(driver),
        "console_errors": browser.console_errors(driver),
        "external_requests": driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith('data:') && !n.startsWith(location.origin))"
        ),
        "host_rows": driver.execute_script(
            "return Array.from(document.querySelectorAll('#hosts tbody tr')).map(r => "
            "({host: r.querySelector('.host').innerText, state: r.className, dot: "
            "getComputedStyle(r.querySelector('.dot')).backgroundColor}))"
        ),
    }
    if shots:
        driver.save_screenshot(f"{shots}/{name}.png")
    return view


def trail(driver) -> list:
    """The custody trail tables' rows: action, actor, chained."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('table.trail tbody tr')).map(r => "
        "({action: r.querySelector('.action').innerText, actor: r.querySelector('.actor').innerText, "
        "cells: Array.from(r.cells).map(c => c.innerText)}))"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    for a in ("base", "name", "password", "incident", "hosts", "reason"):
        ap.add_argument(a)
    ap.add_argument("--screenshot-dir")
    args = ap.parse_args()
    driver = browser.start()
    out = {}
    try:
        driver.get(f"{args.base}/console/?lang=zh-TW")
        out["login_page"] = look(driver, "login", args.screenshot_dir)
        driver.find_element(By.ID, "name").send_keys(args.name)
        driver.find_element(By.ID, "password").send_keys("not the password")
        driver.find_element(By.ID, "submit").click()
        out["login_failed"] = look(driver, "login-failed", args.screenshot_dir)
        driver.find_element(By.ID, "name").send_keys(args.name)
        driver.find_element(By.ID, "password").send_keys(args.password)
        driver.find_element(By.ID, "submit").click()
        out["dashboard"] = look(driver, "dashboard", args.screenshot_dir)
        out["cookie_visible_to_script"] = driver.execute_script("return document.cookie")
        host = args.hosts.split(",")[0].strip()
        for link in driver.find_elements(By.CSS_SELECTOR, "#hosts td.host a"):
            if link.text == host:
                link.click()
                break
        out["host_page"] = look(driver, "host", args.screenshot_dir)
        out["host_streams"] = driver.execute_script(
            "return Array.from(document.querySelectorAll('#streams tbody tr')).map(r => "
            "({stream: r.querySelector('.stream').innerText, segments: r.querySelector('.segments').innerText}))"
        )
        driver.find_element(By.ID, "back").click()
        driver.find_element(By.ID, "open-id").send_keys(args.incident)
        driver.find_element(By.ID, "open-hosts").send_keys(args.hosts)
        driver.find_element(By.ID, "open-reason").send_keys(args.reason)
        driver.find_element(By.ID, "open-submit").click()
        out["incident"] = look(driver, "incident", args.screenshot_dir)
        out["incident_reason"] = driver.find_element(By.ID, "incident-reason").text
        # Wait for the agent's bundle (the page is reloaded, as a person would).
        deadline = time.time() + 150
        while not driver.find_elements(By.CSS_SELECTOR, "a.download") and time.time() < deadline:
            time.sleep(2)
            driver.refresh()
        out["incident_stored"] = look(driver, "incident-stored", args.screenshot_dir)
        out["trail_before"] = trail(driver)
        out["download_links"] = [
            a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "a.download")
        ]
        buttons = driver.find_elements(By.CSS_SELECTOR, "form.verify button")
        if buttons:
            buttons[0].click()
            out["verified"] = look(driver, "verified", args.screenshot_dir)
            out["trail_after"] = trail(driver)
        driver.find_element(By.ID, "back").click()
        out["dashboard_after"] = look(driver, "dashboard-after", args.screenshot_dir)
        driver.find_element(By.ID, "lang").click()
        out["dashboard_other_lang"] = look(driver, "dashboard-en", args.screenshot_dir)
        # The test stops the agent of the first host meanwhile; the host
        # must turn yellow once it has not polled for the quiet threshold.
        print("PAUSE", flush=True)
        sys.stdin.readline()
        deadline = time.time() + 120
        while time.time() < deadline:
            driver.get(f"{args.base}/console/?lang=en")
            rows = look(driver, "dashboard-poll", None)["host_rows"]
            if any(r["host"] == host and r["state"] == "state-yellow" for r in rows):
                break
            time.sleep(2)
        out["dashboard_yellow"] = look(driver, "dashboard-yellow", args.screenshot_dir)
        driver.find_element(By.ID, "logout").click()
        out["after_logout"] = look(driver, "logout", args.screenshot_dir)
        driver.get(f"{args.base}/console/")
        out["after_logout_revisit"] = look(driver, "revisit", args.screenshot_dir)
    finally:
        driver.quit()
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
