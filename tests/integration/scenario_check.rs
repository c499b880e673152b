//! `mailcanary check` on valid and invalid scenarios: every error names the
//! file, line, column and key, and exits 2 without sending anything.

use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/keys/demo-rsa.test-key.pem");

/// A small valid scenario. Line numbers below refer to this text.
const BASE: &str = r#"[scenario]
name = "check test"
max_messages = 4

[sender]
from = "Control <control@news.example.com>"
mail_from = "bounces@news.example.com"

[[dkim]]
domain = "news.example.com"
selector = "rsa2026"
private_key = "key.pem"

[[path]]
name = "b-10"
source_ip = "127.0.0.10"
helo = "mta10.news.example.com"

[[seed]]
address = "seed-1@customer-a.example.net"

[[seed]]
address = "seed-2@customer-a.example.net"

[[stream]]
name = "control"
role = "control"
paths = ["b-10"]
subject = "Control {run_id}"
body = "Plain control message."

[delivery]
retry = ["2m"]
"#;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_mailcanary")
}

/// Writes `text` as `scenario.toml` beside a copy of the test key.
fn write_scenario(directory: &Path, text: &str) -> PathBuf {
    std::fs::copy(KEY, directory.join("key.pem")).expect("copy the test key");
    let file = directory.join("scenario.toml");
    std::fs::write(&file, text).expect("write the scenario");
    file
}

fn check(text: &str) -> (i32, String, String) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let file = write_scenario(directory.path(), text);
    let output = Command::new(binary()).arg("check").arg(&file).output().expect("run mailcanary check");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Replaces the first occurrence of `from` in the base scenario.
fn variant(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "the base scenario has no {from:?}");
    BASE.replacen(from, to, 1)
}

#[test]
fn valid_scenario_prints_the_plan() {
    let (code, stdout, stderr) = check(BASE);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("messages: 2 (max_messages = 4)"), "stdout: {stdout}");
    assert!(stdout.contains("nothing was sent"), "stdout: {stdout}");
}

#[test]
fn bad_scenarios_name_line_column_and_key() {
    let cases: Vec<(&str, String, &str)> = vec![
        ("misspelled gate key", variant("retry = [\"2m\"]", "retyr = [\"2m\"]"), "scenario.toml:33:1"),
        ("unknown key message", variant("retry = [\"2m\"]", "retyr = [\"2m\"]"), "unknown field `retyr`"),
        (
            "invalid source ip",
            variant("\"127.0.0.10\"", "\"127.0.0.300\""),
            "scenario.toml:16:13: path[0].source_ip: invalid IP address",
        ),
        (
            "invalid duration",
            variant("[\"2m\"]", "[\"2 minutes\"]"),
            "scenario.toml:33:10: delivery.retry[0]: invalid duration",
        ),
        (
            "invalid from",
            variant("Control <control@news.example.com>", "Control <control-at-news>"),
            "scenario.toml:6:8: sender.from",
        ),
        (
            "dangling path",
            variant("paths = [\"b-10\"]", "paths = [\"b-12\"]"),
            "scenario.toml:28:10: stream[0].paths[0]: path \"b-12\" is not declared",
        ),
        (
            "dangling mailbox",
            variant(
                "address = \"seed-1@customer-a.example.net\"",
                "address = \"seed-1@customer-a.example.net\"\nmailbox = \"customer-a\"",
            ),
            "scenario.toml:21:11: seed[0].mailbox: mailbox \"customer-a\" is not declared",
        ),
        (
            "missing key file",
            variant("\"key.pem\"", "\"missing.pem\""),
            "scenario.toml:12:15: dkim[0].private_key: file",
        ),
        ("invalid key file", variant("\"key.pem\"", "\"scenario.toml\""), "dkim[0].private_key"),
        (
            "unknown placeholder",
            variant("Control {run_id}", "Control {runid}"),
            "scenario.toml:29:11: stream[0].subject",
        ),
        (
            "bad role",
            variant("role = \"control\"", "role = \"canary\""),
            "scenario.toml:27:8: stream[0].role: invalid role \"canary\"",
        ),
        (
            "password in file",
            variant("[delivery]", "[mailbox.a]\nmaildir = \"m\"\npassword = \"hunter2\"\n\n[delivery]"),
            "mailbox.a.password: secrets never sit in a scenario file",
        ),
        ("zero max", variant("max_messages = 4", "max_messages = 0"), "scenario.toml:3:16: scenario.max_messages"),
        (
            "bad starttls",
            variant("[delivery]", "[delivery]\nstarttls = \"maybe\""),
            "delivery.starttls: invalid starttls \"maybe\"",
        ),
        ("syntax error", variant("name = \"check test\"", "name = check test"), "scenario.toml:2:8"),
    ];
    let mut failures = Vec::new();
    for (label, text, expected) in cases {
        let (code, stdout, stderr) = check(&text);
        if code != 2 || !stderr.contains(expected) || !stdout.is_empty() {
            failures
                .push(format!("{label}: exit {code}, expected {expected:?} in stderr:\n{stderr}stdout: {stdout:?}"));
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_error_is_reported_at_once() {
    let text = variant("\"127.0.0.10\"", "\"not-an-ip\"").replacen("role = \"control\"", "role = \"canary\"", 1);
    let (code, _, stderr) = check(&text);
    assert_eq!(code, 2);
    assert!(stderr.contains("path[0].source_ip"), "stderr: {stderr}");
    assert!(stderr.contains("stream[0].role"), "stderr: {stderr}");
}

#[test]
fn plan_above_max_messages_sends_nothing() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let text = variant("max_messages = 4", "max_messages = 1");
    let file = write_scenario(directory.path(), &text);
    let runs = directory.path().join("runs");
    let output =
        Command::new(binary()).args(["run", "--runs-dir"]).arg(&runs).arg(&file).output().expect("run mailcanary run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("the plan has 2 messages, above max_messages = 1"), "stderr: {stderr}");
    assert!(!runs.exists(), "no run directory may be created for a refused plan");
}

#[test]
fn missing_scenario_file_is_a_usage_error() {
    let output =
        Command::new(binary()).args(["check", "/nonexistent/scenario.toml"]).output().expect("run mailcanary check");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/scenario.toml: cannot read the file"), "stderr: {stderr}");
}
