//! Authentication-Results, ARC-Authentication-Results and Received-SPF
//! parsing against real header values in `tests/fixtures/auth-results.toml`.
//! Every case is checked; a failure lists each case id with the field that
//! differs.

use std::collections::BTreeMap;

use mailcanary::auth::{AuthenticationResults, MethodResult, parse_authentication_results, parse_received_spf};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Fixture {
    header: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    name: String,
    raw: String,
    expect: Expected,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    authserv_id: Option<String>,
    instance: Option<u32>,
    version: Option<u32>,
    #[serde(default)]
    result: Vec<ExpectedResult>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedResult {
    method: String,
    result: String,
    #[serde(default)]
    props: BTreeMap<String, String>,
    reason: Option<String>,
    comment: Option<String>,
    normalized: Option<String>,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth-results.toml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    let fixture: Fixture = toml::from_str(&text).unwrap_or_else(|error| panic!("invalid {path}: {error}"));
    fixture.header
}

/// Parses a case by its header name. Received-SPF has its own grammar, and
/// every other name (including non-standard ones such as
/// `Authentication-Results-Original`) is read as Authentication-Results.
fn parse(case: &Case) -> Result<AuthenticationResults, String> {
    if case.name.eq_ignore_ascii_case("Received-SPF") {
        let result = parse_received_spf(&case.raw).map_err(|error| error.to_string())?;
        return Ok(AuthenticationResults {
            authserv_id: None,
            version: None,
            instance: None,
            results: vec![result],
            none: false,
            ignored: Vec::new(),
        });
    }
    parse_authentication_results(&case.raw).map_err(|error| error.to_string())
}

fn compare_result(
    id: &str,
    position: usize,
    expected: &ExpectedResult,
    actual: &MethodResult,
    failures: &mut Vec<String>,
) {
    let mut check = |field: &str, expected: Option<&str>, actual: Option<&str>| {
        if expected != actual {
            failures.push(format!("{id} result {position} {field}: expected {expected:?}, got {actual:?}"));
        }
    };
    check("method", Some(&expected.method), Some(&actual.method));
    check("result", Some(&expected.result), Some(&actual.result));
    check("reason", expected.reason.as_deref(), actual.reason.as_deref());
    check("comment", expected.comment.as_deref(), actual.comment.as_deref());
    check("normalized", expected.normalized.as_deref(), actual.normalized.as_deref());

    let props: BTreeMap<String, String> = actual.props.iter().map(|prop| (prop.key(), prop.value.clone())).collect();
    if props.len() != actual.props.len() {
        failures.push(format!("{id} result {position} props: a key appears twice in {:?}", actual.props));
    }
    if props != expected.props {
        failures.push(format!("{id} result {position} props: expected {:?}, got {props:?}", expected.props));
    }
}

#[test]
fn every_case_matches_its_expectation() {
    let cases = cases();
    assert!(!cases.is_empty(), "no cases in the fixture");
    let mut failures = Vec::new();

    for case in &cases {
        let parsed = match parse(case) {
            Ok(parsed) => parsed,
            Err(error) => {
                failures.push(format!("{}: parse failed: {error}", case.id));
                continue;
            }
        };
        let expect = &case.expect;

        if parsed.authserv_id != expect.authserv_id {
            failures.push(format!(
                "{} authserv_id: expected {:?}, got {:?}",
                case.id, expect.authserv_id, parsed.authserv_id
            ));
        }
        if parsed.instance != expect.instance {
            failures.push(format!("{} instance: expected {:?}, got {:?}", case.id, expect.instance, parsed.instance));
        }
        if parsed.version != expect.version {
            failures.push(format!("{} version: expected {:?}, got {:?}", case.id, expect.version, parsed.version));
        }
        if parsed.results.len() != expect.result.len() {
            let methods: Vec<&str> = parsed.results.iter().map(|result| result.method.as_str()).collect();
            failures.push(format!(
                "{} results: expected {}, got {} {methods:?}",
                case.id,
                expect.result.len(),
                parsed.results.len()
            ));
            continue;
        }
        for (position, (expected, actual)) in expect.result.iter().zip(&parsed.results).enumerate() {
            compare_result(&case.id, position, expected, actual, &mut failures);
        }
    }

    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn none_form_sets_the_flag() {
    let parsed = parse_authentication_results("authservid; none").unwrap();
    assert!(parsed.none);
    assert!(parsed.results.is_empty());
}

#[test]
fn microsoft_tokens_between_results_are_kept_as_ignored() {
    let case = cases().into_iter().find(|case| case.id == "A3").expect("case A3");
    let parsed = parse_authentication_results(&case.raw).unwrap();
    assert_eq!(parsed.ignored, ["outlook.com", "outlook.com"]);
}

#[test]
fn normalized_result_is_the_effective_one() {
    let case = cases().into_iter().find(|case| case.id == "A15").expect("case A15");
    let parsed = parse_authentication_results(&case.raw).unwrap();
    let dmarc = parsed.method("dmarc").next().expect("a dmarc result");
    assert_eq!(dmarc.effective_result(), "pass");
}
