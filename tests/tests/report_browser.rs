//! The coverage report as a responder sees it: the real agent keeps a log
//! whose file name is hostile HTML, `custody-report coverage --format html`
//! writes the page in English and in Traditional Chinese, and headless
//! Chromium opens each one. Headings, tables and the heatmap are there, the
//! language is the one asked for, the hostile name is shown as text, and
//! nothing from it runs (no script, no handler, no console error, no
//! request outside the page).

use std::process::Command;
use std::time::Duration;

use custody_tests::browser::view_page;
use custody_tests::*;

/// A file name a hostile user could give a log: `"><img … onerror=…>`.
const HOSTILE_NAME: &str = r#"x"><img src=x onerror=window.__custody_pwned=1>.log"#;

#[test]
fn the_html_coverage_report_renders_in_both_languages_and_runs_nothing() {
    let env = TestEnv::new("report_browser");
    let hostile = env.log(HOSTILE_NAME);
    let plain = env.log("auth.log");
    let mut writers = [
        LineWriter::new(&hostile, "hb"),
        LineWriter::new(&plain, "pb"),
    ];
    for w in writers.iter_mut() {
        w.append(testdata_lines(), 50);
    }
    let opts = AgentOptions::new(&env)
        .source("os", &hostile.display().to_string())
        .source("logon", &plain.display().to_string());
    let mut agent = AgentProcess::start(&opts);
    let n = writers.iter().map(|w| w.ids().len()).sum();
    wait_for_lines(&env, n, Duration::from_secs(60));
    agent.stop_clean(Duration::from_secs(60));

    for (lang, title, heatmap) in [
        ("en", "Evidence coverage report", "Evidence by day"),
        ("zh-TW", "證據保存涵蓋報告", "每日證據"),
    ] {
        let page = env.root.join(format!("coverage-{lang}.html"));
        let out = Command::new(&bins().report)
            .args(["coverage", "--format", "html", "--lang", lang, "--store"])
            .arg(&env.store)
            .arg("--out")
            .arg(&page)
            .output()
            .expect("run custody-report");
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(1),
            "custody-report coverage --lang {lang} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let html = std::fs::read_to_string(&page).expect("the HTML report");
        assert!(
            !html.contains("<img"),
            "raw <img> in the {lang} report's source"
        );
        let shot = env.root.join(format!("coverage-{lang}.png"));
        let view = view_page(
            &format!("file://{}", page.display()),
            &["h1", "h2", "table", "svg rect", "img"],
            Some(&shot),
        );
        view.assert_safe();
        assert_eq!(view.lang, lang, "<html lang> of the {lang} report");
        assert_eq!(view.count("h1"), 1, "{lang}");
        assert!(view.count("h2") >= 3, "{lang}: {} h2", view.count("h2"));
        assert!(
            view.count("table") >= 3,
            "{lang}: {} tables",
            view.count("table")
        );
        assert!(
            view.count("svg rect") >= 2,
            "{lang}: the heatmap has {} cells",
            view.count("svg rect")
        );
        assert_eq!(view.count("img"), 0, "{lang}: an <img> element exists");
        assert!(
            view.text.contains(title),
            "{lang}: title missing:\n{}",
            view.text
        );
        assert!(
            view.text.contains(heatmap),
            "{lang}: heatmap heading missing"
        );
        assert!(
            view.text.contains(HOSTILE_NAME),
            "{lang}: the hostile file name is not shown as text:\n{}",
            view.text
        );
        assert!(shot.is_file(), "{lang}: no screenshot");
    }
}
