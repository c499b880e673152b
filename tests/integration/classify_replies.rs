//! Classification of real SMTP replies against the expected readings in
//! `tests/fixtures/replies.toml` and `tests/fixtures/replies-extra.toml`.
//!
//! Each case is classified from its `text` with its `mx` and `stage` as
//! context, and again from its `wrapped` form (a log line, a bounce or a
//! library error) when it has one. The accuracy over each file is printed.

use std::net::IpAddr;

use mailcanary::classify::{Classification, ReplyContext, Rules, classify, explain};
use mailcanary::smtp::record::{Reply, Step};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Fixture {
    reply: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    text: String,
    wrapped: Option<String>,
    stage: Option<Step>,
    mx: Option<String>,
    expect: Expected,
}

#[derive(Debug, Deserialize)]
struct Expected {
    outcome: String,
    code: Option<u16>,
    enhanced: Option<String>,
    provider: String,
    reason: String,
    ip: Option<IpAddr>,
    lookup_url: Option<String>,
}

fn load(name: &str) -> Vec<Case> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    let fixture: Fixture = toml::from_str(&text).unwrap_or_else(|error| panic!("invalid {path}: {error}"));
    fixture.reply
}

fn serde_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|value| value.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Lists every field that differs, as `field: expected X, got Y`. Fields
/// named in `skip` are not compared.
fn differences(expected: &Expected, actual: &Classification, skip: &[&str]) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut compare = |field: &str, expected: String, actual: String| {
        if !skip.contains(&field) && expected != actual {
            wrong.push(format!("{field}: expected {expected}, got {actual}"));
        }
    };
    let outcome = actual.outcome.as_ref().map(serde_name).unwrap_or_else(|| "none".to_owned());
    compare("outcome", expected.outcome.clone(), outcome);
    compare("code", format!("{:?}", expected.code), format!("{:?}", actual.code));
    compare("enhanced", format!("{:?}", expected.enhanced), format!("{:?}", actual.enhanced));
    compare("provider", expected.provider.clone(), serde_name(&actual.provider));
    compare("reason", expected.reason.clone(), serde_name(&actual.reason));
    compare("ip", format!("{:?}", expected.ip), format!("{:?}", actual.ip));
    compare("lookup_url", format!("{:?}", expected.lookup_url), format!("{:?}", actual.lookup_url));
    for problem in wrong.iter_mut().filter(|problem| problem.starts_with("reason:")) {
        problem.push_str(&format!(" (rule {})", actual.rule));
    }
    wrong
}

fn classify_text(case: &Case) -> Classification {
    let context = ReplyContext { mx_host: case.mx.clone(), stage: case.stage, source_ip: None };
    classify(&Reply::parse_text(&case.text), &context)
}

/// Checks every case of one file and returns the report lines of wrong ones.
fn check_file(name: &str) -> Vec<String> {
    let cases = load(name);
    let mut wrong = Vec::new();
    let mut fully_right = 0;
    for case in &cases {
        let actual = classify_text(case);
        let mut problems: Vec<String> = differences(&case.expect, &actual, &[]);
        if problems.is_empty() {
            fully_right += 1;
        } else {
            problems.insert(0, format!("{} (text):", case.id));
            wrong.push(problems.join("\n    "));
        }
    }
    println!("{name}: {fully_right} of {} cases fully right", cases.len());
    wrong
}

#[test]
fn handed_replies_classify_as_expected() {
    let wrong = check_file("replies.toml");
    assert!(wrong.is_empty(), "wrong cases:\n{}", wrong.join("\n"));
}

#[test]
fn extra_replies_classify_as_expected() {
    let wrong = check_file("replies-extra.toml");
    assert!(wrong.is_empty(), "wrong cases:\n{}", wrong.join("\n"));
}

#[test]
fn extra_file_has_enough_cases() {
    assert!(load("replies-extra.toml").len() >= 12);
}

/// A wrapped copy that was cut may have lost the IP or the URL; a field
/// whose expected value no longer appears in it is not compared.
#[test]
fn wrapped_replies_classify_like_their_text() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for name in ["replies.toml", "replies-extra.toml"] {
        for case in load(name) {
            let Some(wrapped) = &case.wrapped else {
                continue;
            };
            checked += 1;
            let (unwrapped, actual) = explain(wrapped, case.mx.as_deref(), Rules::builtin());

            let mut skip = Vec::new();
            if case.expect.ip.is_some_and(|ip| !wrapped.contains(&ip.to_string())) {
                skip.push("ip");
            }
            if case.expect.lookup_url.as_ref().is_some_and(|url| !wrapped.contains(url.as_str())) {
                skip.push("lookup_url");
            }
            let mut problems: Vec<String> = differences(&case.expect, &actual, &skip);
            if let (Some(found), Some(expected)) = (unwrapped.stage, case.stage)
                && found != expected
            {
                problems.push(format!("stage: expected {expected}, unwrapped {found}"));
            }
            if !problems.is_empty() {
                problems.insert(0, format!("{} (wrapped, from {name}):", case.id));
                wrong.push(problems.join("\n    "));
            }
        }
    }
    println!("wrapped forms: {} of {checked} fully right", checked - wrong.len());
    assert!(wrong.is_empty(), "wrong wrapped cases:\n{}", wrong.join("\n"));
}
