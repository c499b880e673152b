//! Reply parsing against real replies collected in `tests/fixtures/replies.toml`.
//! Only the reply code and the enhanced status code are checked here; the
//! provider and reason of each case belong to classification.

use mailcanary::smtp::record::Reply;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Fixture {
    reply: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    text: String,
    expect: Expected,
}

#[derive(Debug, Deserialize)]
struct Expected {
    code: Option<u16>,
    enhanced: Option<String>,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/replies.toml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    let fixture: Fixture = toml::from_str(&text).unwrap_or_else(|error| panic!("invalid {path}: {error}"));
    fixture.reply
}

#[test]
fn fixture_has_cases() {
    assert!(cases().len() >= 50, "expected the full fixture, found {} cases", cases().len());
}

#[test]
fn parse_text_reads_reply_code() {
    let mut wrong = Vec::new();
    for case in cases() {
        let reply = Reply::parse_text(&case.text);
        if reply.code != case.expect.code {
            wrong.push(format!("{}: code {:?}, expected {:?}", case.id, reply.code, case.expect.code));
        }
    }
    assert!(wrong.is_empty(), "wrong reply codes:\n{}", wrong.join("\n"));
}

#[test]
fn parse_text_reads_enhanced_code() {
    let mut wrong = Vec::new();
    for case in cases() {
        let reply = Reply::parse_text(&case.text);
        if reply.enhanced != case.expect.enhanced {
            wrong.push(format!("{}: enhanced {:?}, expected {:?}", case.id, reply.enhanced, case.expect.enhanced));
        }
    }
    assert!(wrong.is_empty(), "wrong enhanced codes:\n{}", wrong.join("\n"));
}

#[test]
fn parse_text_keeps_every_line() {
    for case in cases() {
        let reply = Reply::parse_text(&case.text);
        let expected = case.text.trim_matches('\n').lines().count();
        assert_eq!(reply.lines.len(), expected, "case {}", case.id);
    }
}

#[test]
fn parse_text_redacted_lines_leave_text() {
    let case = cases().into_iter().find(|case| case.id == "R25").expect("case R25");
    let text = Reply::parse_text(&case.text).text();
    assert!(text.starts_with("[203.0.113.70       4] Our system"), "{text}");
    assert!(!text.contains("x.x.xx"), "{text}");
    assert!(!text.contains("421"), "{text}");
}

#[test]
fn parse_text_code_only_from_enhanced() {
    let case = cases().into_iter().find(|case| case.id == "R59b").expect("case R59b");
    let reply = Reply::parse_text(&case.text);
    assert_eq!(reply.lines, ["4.7.1  "]);
    assert_eq!(reply.text(), "");
    assert!(reply.is_transient());
}
