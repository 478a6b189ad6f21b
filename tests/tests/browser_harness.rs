//! The browser check itself: a page that runs a planted script, loads an
//! image with an `onerror` handler, logs a console error and fetches from
//! elsewhere is caught on every count, and the same content escaped passes.
//! Without this, a browser test of a report or the console could pass
//! because the check saw nothing.

use std::fs;

use custody_tests::browser::view_page;
use custody_tests::TestEnv;

const HOSTILE_HOST: &str = r#""><img src=x onerror="window.__custody_pwned=1">"#;
const HOSTILE_LINE: &str = "<script>window.__custody_pwned=1;alert(1)</script>";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[test]
fn escaped_hostile_text_is_shown_as_text_and_nothing_runs() {
    let env = TestEnv::new("browser-safe");
    let page = env.root.join("safe.html");
    fs::write(
        &page,
        format!(
            "<!doctype html><html lang=\"zh-TW\"><head><meta charset=\"utf-8\"><title>安全</title></head>\
             <body><h1>主機</h1><table><tr><td>{}</td><td>{}</td></tr></table>\
             <svg width=\"20\" height=\"10\"><rect width=\"5\" height=\"5\"/><rect x=\"6\" width=\"5\" height=\"5\"/></svg></body></html>",
            escape(HOSTILE_HOST),
            escape(HOSTILE_LINE)
        ),
    )
    .unwrap();
    let view = view_page(
        &format!("file://{}", page.display()),
        &["h1", "table td", "svg rect"],
        None,
    );
    view.assert_safe();
    assert_eq!(view.lang, "zh-TW");
    assert_eq!(view.title, "安全");
    assert_eq!(view.count("table td"), 2);
    assert_eq!(view.count("svg rect"), 2);
    assert!(view.text.contains(HOSTILE_HOST), "{}", view.text);
    assert!(view.text.contains(HOSTILE_LINE), "{}", view.text);
}

#[test]
fn the_check_sees_a_script_that_runs() {
    let env = TestEnv::new("browser-hostile");
    let page = env.root.join("hostile.html");
    fs::write(
        &page,
        format!(
            "<!doctype html><html><head><title>t</title></head><body><p>{HOSTILE_HOST}</p>\
             <script>console.error('planted')</script></body></html>"
        ),
    )
    .unwrap();
    let view = view_page(&format!("file://{}", page.display()), &["p"], None);
    let caught = std::panic::catch_unwind(|| view.assert_safe());
    assert!(
        caught.is_err(),
        "assert_safe passed a page whose script ran"
    );
    assert!(view.pwned, "window.__custody_pwned not seen: {view:?}");
    assert_eq!(view.foreign_elements.len(), 2, "{view:?}");
    assert!(
        view.console_errors.iter().any(|e| e.contains("planted")),
        "{view:?}"
    );
}
