"""Opens one page in headless Chromium and says what a person would see.

    check_page.py URL [--screenshot FILE.png] [--selector CSS ...]

Prints one JSON object: the page title, its visible text, how many
elements each --selector matched, the console errors, whether any alert
opened, whether `window.__custody_pwned` was set (the hostile test inputs
set it if they ever run), and how many elements carry an event-handler
attribute or are scripts/iframes/objects that the page did not ship.
The Rust test decides what is right; this script only looks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import browser

FOREIGN = "img[onerror], [onload], [onclick], [onmouseover], iframe, object, embed, script:not([data-custody])"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--screenshot")
    ap.add_argument("--selector", action="append", default=[])
    args = ap.parse_args()
    driver = browser.start()
    try:
        driver.get(args.url)
        # Let deferred scripts and image loads (onerror) run.
        time.sleep(1.0)
        result = {
            "title": driver.title,
            "lang": driver.execute_script("return document.documentElement.lang"),
            "text": driver.execute_script("return document.body ? document.body.innerText : ''"),
            "counts": {
                sel: driver.execute_script(f"return document.querySelectorAll({json.dumps(sel)}).length")
                for sel in args.selector
            },
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
        }
        if args.screenshot:
            driver.save_screenshot(args.screenshot)
    finally:
        driver.quit()
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
