//! Proofpoint header parsing against real X-Proofpoint-* values and Received
//! fields of Proofpoint hops in `tests/fixtures/proofpoint-headers.toml`.
//! Every case is checked; a failure lists each case id with the field that
//! differs.

use mailcanary::auth::proofpoint::{FieldValue, parse_proofpoint_headers, proofpoint_hop_kind};
use mailcanary::auth::received::parse_received;
use serde::Deserialize;
use toml::Value;

#[derive(Debug, Deserialize)]
struct Fixture {
    header: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    name: String,
    raw: String,
    expect: toml::Table,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proofpoint-headers.toml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    let fixture: Fixture = toml::from_str(&text).unwrap_or_else(|error| panic!("invalid {path}: {error}"));
    fixture.header
}

/// Converts a parsed value to the TOML form the fixture writes.
fn field_to_toml(value: &FieldValue) -> Value {
    match value {
        FieldValue::Number(number) => Value::Integer(i64::from(*number)),
        FieldValue::Text(text) => Value::String(text.clone()),
    }
}

fn text(value: Option<&String>) -> Option<Value> {
    value.map(|text| Value::String(text.clone()))
}

/// Returns what the parser produced for one case, in the fixture's keys.
fn actual(case: &Case) -> toml::Table {
    let headers = vec![(case.name.clone(), case.raw.clone())];
    let found = parse_proofpoint_headers(&headers);
    let mut table = toml::Table::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            table.insert(key.to_string(), value);
        }
    };

    match case.name.to_ascii_lowercase().as_str() {
        "x-proofpoint-spam-details" => {
            let details = found.spam_details.expect("spam details parsed");
            put("rule", text(details.rule.as_ref()));
            put("policy", text(details.policy.as_ref()));
            put("score", details.score.map(|score| Value::Integer(i64::from(score))));
            let not_computed = details.not_computed();
            if !not_computed.is_empty() {
                let names = not_computed.iter().map(|name| Value::String(name.to_string())).collect();
                put("not_computed", Some(Value::Array(names)));
            }
            let fields = details.fields.iter().map(|(key, value)| (key.clone(), field_to_toml(value))).collect();
            put("fields", Some(Value::Table(fields)));
        }
        "x-proofpoint-virus-version" => {
            let version = found.virus_version.expect("virus version parsed");
            put("vendor", text(version.vendor.as_ref()));
            put("engine", text(version.engine.as_ref()));
            put("definitions", text(version.definitions.as_ref()));
            put("signatures", text(version.signatures.as_ref()));
        }
        "x-proofpoint-spf-result" => put("spf_result", text(found.spf_result.as_ref())),
        "x-proofpoint-spf-record" => put("spf_record", text(found.spf_record.as_ref())),
        "x-proofpoint-guid" => put("guid", text(found.guid.as_ref())),
        "x-proofpoint-orig-guid" => put("guid", text(found.orig_guid.as_ref())),
        "x-proofpoint-unrewurl" => {
            put("unrewritten_urls", found.unrewritten_urls.map(|count| Value::Integer(i64::from(count))))
        }
        "received" => {
            let hop = found.hops.first().expect("a Proofpoint hop");
            put("proofpoint_hop", Some(Value::String(hop.kind.as_str().to_string())));
            put("from", text(hop.received.from.as_ref()));
            put("by", text(hop.received.by.as_ref()));
        }
        other => panic!("{}: no parser for header {other}", case.id),
    }
    table
}

#[test]
fn every_case_matches_its_expectation() {
    let cases = cases();
    assert!(!cases.is_empty(), "no cases in the fixture");
    let mut failures = Vec::new();

    for case in &cases {
        let actual = actual(case);
        for (key, expected) in &case.expect {
            let got = actual.get(key);
            if got != Some(expected) {
                failures.push(format!("{} {key}: expected {expected}, got {got:?}", case.id));
            }
        }
        for key in actual.keys().filter(|key| !case.expect.contains_key(*key)) {
            failures.push(format!("{} {key}: not expected, got {}", case.id, actual[key]));
        }
    }

    assert!(failures.is_empty(), "{} differences in {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn spam_details_keep_field_order() {
    let headers = vec![(
        "X-Proofpoint-Spam-Details".to_string(),
        "rule=notspam policy=default score=0 spamscore=0 engine=8.0.1-1707230000".to_string(),
    )];
    let details = parse_proofpoint_headers(&headers).spam_details.unwrap();
    let keys: Vec<&str> = details.fields.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["spamscore", "engine"]);
}

#[test]
fn older_virus_version_continues_after_comma() {
    let headers = vec![(
        "X-Proofpoint-Virus-Version".to_string(),
        "vendor=fsecure engine=2.50.10434:6.0.235, 18.0.687\r\n definitions=2020-09-04_05:2020-09-04,\r\n 2020-09-04 signatures=0".to_string(),
    )];
    let version = parse_proofpoint_headers(&headers).virus_version.unwrap();
    assert_eq!(version.engine.as_deref(), Some("2.50.10434:6.0.235, 18.0.687"));
    assert_eq!(version.definitions.as_deref(), Some("2020-09-04_05:2020-09-04, 2020-09-04"));
    assert_eq!(version.signatures.as_deref(), Some("0"));
}

#[test]
fn spam_reason_and_top_most_instance() {
    let headers = vec![
        ("X-Proofpoint-Spam-Reason".to_string(), "safe".to_string()),
        ("X-Proofpoint-Spam-Reason".to_string(), "mlx".to_string()),
        ("X-Proofpoint-Spam-Bulk".to_string(), " 0\r\n ".to_string()),
    ];
    let found = parse_proofpoint_headers(&headers);
    assert_eq!(found.spam_reason.as_deref(), Some("safe"));
    assert_eq!(found.other, [("X-Proofpoint-Spam-Bulk".to_string(), "0".to_string())]);
}

#[test]
fn full_proofpoint_chain_has_each_hop_kind() {
    let chain = [
        "from mx0a-001b2d01.pphosted.com (mx0a-001b2d01.pphosted.com [192.0.2.40])\r\n by mail.customer-a.example (Postfix) with ESMTPS id 4QfX1 for <seed@customer-a.example>;\r\n Thu, 11 May 2023 10:15:09 +0000",
        "from pps.reinject (localhost [127.0.0.1])\r\n by mx0a-001b2d01.pphosted.com (PPS) with ESMTPS id 34BA5x9v020211\r\n for <seed@customer-a.example>; Thu, 11 May 2023 10:15:08 +0000",
        "from pps.filterd (m0098409.ppops.net [127.0.0.1])\r\n by mx0a-001b2d01.pphosted.com (8.17.1.19/8.17.1.19) with ESMTP id 34BA2jfT020211;\r\n Thu, 11 May 2023 10:15:07 +0000",
        "from mta10.news.example.com (mta10.news.example.com [203.0.113.10])\r\n by mx0a-001b2d01.pphosted.com (PPS) with ESMTPS id 3qh2a5g1h9-1\r\n for <seed@customer-a.example>; Thu, 11 May 2023 10:15:05 +0000",
    ];
    let kinds: Vec<&str> = chain
        .iter()
        .map(|value| proofpoint_hop_kind(&parse_received(value)).map_or("none", |kind| kind.as_str()))
        .collect();
    assert_eq!(kinds, ["outbound", "reinject", "filter", "inbound"]);
}

#[test]
fn received_outside_proofpoint_is_not_a_hop() {
    let received = parse_received(
        "from a.example (a.example [192.0.2.1]) by b.example with ESMTP id x; Thu, 11 May 2023 10:15:05 +0000",
    );
    assert_eq!(proofpoint_hop_kind(&received), None);
}
