//! What a person would see: a page opened in headless Chromium (Debian's
//! `chromium` and `chromium-driver`, driven by Selenium from the test
//! tools' virtual environment) through `tests/browser/check_page.py`.
//!
//! The script only looks; the tests decide. [`PageView::assert_safe`] is
//! the check every page must pass: nothing from a log ran (no alert, no
//! `window.__custody_pwned`, which the hostile test inputs set if they ever
//! execute), no element with an event handler or a script the page did not
//! ship, no console error and no request to anything outside the page.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// The page as the browser rendered it.
#[derive(Debug, Deserialize)]
pub struct PageView {
    pub title: String,
    /// `<html lang>`.
    pub lang: String,
    /// `document.body.innerText`: the text a reader sees, entities decoded.
    pub text: String,
    /// How many elements each selector given to [`view_page`] matched.
    pub counts: BTreeMap<String, u64>,
    /// Elements with event-handler attributes, and scripts without
    /// `data-custody`, iframes, objects, embeds (their HTML, shortened).
    pub foreign_elements: Vec<String>,
    /// `window.__custody_pwned` was set: a planted script ran.
    pub pwned: bool,
    /// The text of an alert that opened, if any.
    pub alert: Option<String>,
    pub console_errors: Vec<String>,
    /// Resources fetched from anywhere but the page's own origin or `data:`.
    pub external_requests: Vec<String>,
}

impl PageView {
    /// How many elements `selector` matched (it must have been asked for).
    pub fn count(&self, selector: &str) -> u64 {
        *self
            .counts
            .get(selector)
            .unwrap_or_else(|| panic!("selector {selector:?} was not passed to view_page"))
    }

    /// Panics, saying what was found, unless nothing ran, nothing foreign
    /// is in the page, the console is clean and nothing was fetched.
    pub fn assert_safe(&self) {
        assert!(
            !self.pwned,
            "a planted script ran (window.__custody_pwned is set)"
        );
        assert_eq!(self.alert, None, "an alert opened");
        assert!(
            self.foreign_elements.is_empty(),
            "elements the page must not contain: {:?}",
            self.foreign_elements
        );
        assert!(
            self.console_errors.is_empty(),
            "console errors: {:?}",
            self.console_errors
        );
        assert!(
            self.external_requests.is_empty(),
            "requests outside the page: {:?}",
            self.external_requests
        );
    }
}

/// Opens `url` (`file://…` or `https://…`) in a fresh headless Chromium,
/// counts `selectors`, optionally saves a screenshot, and returns what it saw.
pub fn view_page(url: &str, selectors: &[&str], screenshot: Option<&Path>) -> PageView {
    let script = crate::bins::workspace_root().join("tests/browser/check_page.py");
    let mut cmd = Command::new(crate::python::python3());
    cmd.arg(&script).arg(url);
    for sel in selectors {
        cmd.args(["--selector", sel]);
    }
    if let Some(path) = screenshot {
        cmd.arg("--screenshot").arg(path);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e} (install selenium into .venv and Debian's chromium and chromium-driver: .ci/run does)",
            script.display()
        )
    });
    assert!(
        out.status.success(),
        "check_page.py {url} failed (needs selenium in .venv, /usr/bin/chromium and /usr/bin/chromedriver): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check_page.py printed no page view ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Drives the collector console through `tests/browser/console_flow.py`
/// (log in with a wrong then the right password, read the dashboard, open
/// an incident with the form, wait for its bundle, verify it, switch
/// language; then `pause` runs (the test stops an agent) and the script
/// reloads the dashboard until the first of `hosts` shows yellow; log out)
/// and returns what each page showed, as JSON.
#[allow(clippy::too_many_arguments)]
pub fn console_flow(
    base: &str,
    name: &str,
    password: &str,
    incident: &str,
    hosts: &str,
    reason: &str,
    screenshots: Option<&Path>,
    pause: &mut dyn FnMut(),
) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Read, Write};
    let script = crate::bins::workspace_root().join("tests/browser/console_flow.py");
    let mut cmd = Command::new(crate::python::python3());
    cmd.arg(&script)
        .args([base, name, password, incident, hosts, reason]);
    if let Some(dir) = screenshots {
        cmd.arg("--screenshot-dir").arg(dir);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (selenium in .venv, Debian's chromium and chromium-driver)",
                script.display()
            )
        });
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    let _ = stdout.read_line(&mut first);
    if first.trim() == "PAUSE" {
        pause();
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait().expect("console_flow.py");
    assert!(status.success(), "console_flow.py failed: {first}{stderr}");
    let json = if first.trim() == "PAUSE" {
        rest
    } else {
        first + &rest
    };
    serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("console_flow.py printed no JSON ({e}): {json}\n{stderr}"))
}
