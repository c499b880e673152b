//! Checks of the sender's published records: SPF (RFC 7208), DKIM keys
//! (RFC 6376 section 3.6.1) and DMARC (RFC 7489).

use std::collections::BTreeSet;

use super::{Finding, Status, finding};
use crate::dns::{Dns, DnsError};
use crate::message::DkimSigner;
use crate::scenario::Scenario;

/// The SPF limit on DNS-querying terms (RFC 7208 section 4.6.4).
const SPF_LOOKUP_LIMIT: usize = 10;

/// Returns the organizational domain of `domain`: its last two labels.
///
/// NOTE: without the public suffix list, a domain under a two-label public
/// suffix (`example.co.uk`) is cut one label short, so DMARC relaxed
/// alignment and the organizational fallback can be wrong for it.
pub fn organizational_domain(domain: &str) -> String {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() <= 2 { domain } else { labels[labels.len() - 2..].join(".") }
}

/// Returns the SPF records among `texts`: those starting with `v=spf1`.
fn spf_records(texts: &[String]) -> Vec<&String> {
    texts
        .iter()
        .filter(|text| {
            let lower = text.trim_start().to_ascii_lowercase();
            lower == "v=spf1" || lower.starts_with("v=spf1 ")
        })
        .collect()
}

/// Counts the DNS-querying terms of an SPF record and of every record it
/// includes or redirects to, as RFC 7208 section 4.6.4 counts them.
pub async fn spf_lookup_count(dns: &Dns, domain: &str) -> usize {
    let mut visited = BTreeSet::new();
    let mut pending = vec![domain.to_ascii_lowercase()];
    let mut count = 0;
    while let Some(current) = pending.pop() {
        // Past the limit the record is a permerror anyway; stop following.
        if !visited.insert(current.clone()) || count > SPF_LOOKUP_LIMIT {
            continue;
        }
        let Ok(texts) = dns.txt(&current).await else { continue };
        let Some(record) = spf_records(&texts).first().map(|record| record.to_string()) else { continue };
        for term in record.split_whitespace().skip(1) {
            let term = term.trim_start_matches(['+', '-', '~', '?']).to_ascii_lowercase();
            let (name, argument) = match term.split_once([':', '=']) {
                Some((name, argument)) => (name.to_string(), Some(argument.to_string())),
                None => (term.split('/').next().unwrap_or("").to_string(), None),
            };
            match name.as_str() {
                "include" | "redirect" => {
                    count += 1;
                    if let Some(target) = argument.filter(|target| !target.contains('%')) {
                        pending.push(target);
                    }
                }
                "a" | "mx" | "ptr" | "exists" => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// Checks the SPF record of `domain` itself: present, single, valid and
/// within the lookup limit. `required` is false for HELO domains, whose
/// record is optional.
pub async fn check_spf_record(dns: &Dns, domain: &str, required: bool, findings: &mut Vec<Finding>) {
    let subject = format!("domain {domain}");
    let texts = match dns.txt(domain).await {
        Ok(texts) => texts,
        Err(DnsError::NotFound { .. }) => Vec::new(),
        Err(error) => {
            findings.push(finding(
                "spf-record",
                &subject,
                Status::Warn,
                format!("TXT lookup of {domain} failed: {error}"),
                None,
            ));
            return;
        }
    };
    let records = spf_records(&texts);
    match records.len() {
        0 if required => {
            findings.push(finding(
                "spf-record",
                &subject,
                Status::Fail,
                format!("{domain} publishes no SPF record"),
                Some(format!("publish TXT {domain} \"v=spf1 ip4:<your sending IPs> -all\"")),
            ));
            return;
        }
        0 => {
            findings.push(finding(
                "spf-record",
                &subject,
                Status::Info,
                format!("{domain} publishes no SPF record (optional for a HELO name)"),
                None,
            ));
            return;
        }
        1 => {}
        count => {
            findings.push(finding(
                "spf-record",
                &subject,
                Status::Fail,
                format!("{domain} publishes {count} SPF records, which is a permerror for every receiver (RFC 7208 section 4.5)"),
                Some(format!("merge them into one TXT record at {domain}")),
            ));
            return;
        }
    }

    let record = records[0];
    let mut problems = Vec::new();
    for term in record.split_whitespace().skip(1) {
        let lower = term.to_ascii_lowercase();
        let bare = lower.trim_start_matches(['+', '-', '~', '?']);
        let name = bare.split([':', '=', '/']).next().unwrap_or("");
        let known_mechanism = matches!(name, "all" | "include" | "a" | "mx" | "ptr" | "ip4" | "ip6" | "exists");
        let modifier = bare.contains('=') && !bare.contains(':');
        if !known_mechanism && !modifier {
            problems.push((
                Status::Fail,
                format!("unknown term {term:?}: a syntax error that makes the record a permerror"),
                Some(format!("remove or correct {term} in the SPF record of {domain}")),
            ));
        }
        if lower == "+all" || lower == "all" {
            problems.push((
                Status::Fail,
                format!("{term} authorizes every IP on the internet"),
                Some(format!("end the SPF record of {domain} with -all or ~all")),
            ));
        }
        if name == "ptr" {
            problems.push((
                Status::Warn,
                "the ptr mechanism is slow and discouraged (RFC 7208 section 5.5)".to_string(),
                Some(format!("replace ptr with ip4/ip6 terms in the SPF record of {domain}")),
            ));
        }
        if matches!(name, "include" | "redirect")
            && bare.split_once([':', '=']).is_some_and(|(_, target)| target.is_empty())
        {
            problems.push((
                Status::Fail,
                format!("{term} names no domain"),
                Some(format!("correct {term} in the SPF record of {domain}")),
            ));
        }
    }
    let lookups = spf_lookup_count(dns, domain).await;
    if lookups > SPF_LOOKUP_LIMIT {
        problems.push((
            Status::Fail,
            format!("{lookups} DNS-querying terms (include, a, mx, ptr, exists, redirect), above the limit of {SPF_LOOKUP_LIMIT}: receivers return permerror"),
            Some(format!("flatten includes into ip4/ip6 terms in the SPF record of {domain}")),
        ));
    }
    if problems.is_empty() {
        findings.push(finding(
            "spf-record",
            &subject,
            Status::Pass,
            format!("one SPF record, {lookups} DNS-querying terms: {record}"),
            None,
        ));
    }
    for (status, detail, fix) in problems {
        findings.push(finding("spf-record", &subject, status, detail, fix));
    }
}

/// Splits a DKIM or DMARC record into lowercased tags and their values.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(tag, value)| (tag.trim().to_ascii_lowercase(), value.split_whitespace().collect::<String>()))
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter().find(|(tag, _)| tag == name).map(|(_, value)| value.as_str())
}

/// Checks one DKIM selector: the key record exists, is not revoked or in
/// testing mode, has the right type and matches the scenario's private key.
pub async fn check_dkim(dns: &Dns, signer: &DkimSigner, findings: &mut Vec<Finding>) {
    let name = format!("{}._domainkey.{}", signer.selector, signer.domain);
    let expected = signer.key.public_key_record();
    let publish = format!("publish TXT {name} \"{expected}\"");
    let texts = match dns.txt(&name).await {
        Ok(texts) => texts,
        Err(DnsError::NotFound { .. }) => Vec::new(),
        Err(error) => {
            findings.push(finding("dkim", &name, Status::Warn, format!("lookup failed: {error}"), None));
            return;
        }
    };
    let Some(record) = texts.iter().find(|text| text.contains("p=")) else {
        findings.push(finding(
            "dkim",
            &name,
            Status::Fail,
            format!("no DKIM key is published at {name}"),
            Some(publish),
        ));
        return;
    };

    let published = tags(record);
    let expected_tags = tags(&expected);
    let mut problems = Vec::new();
    if let Some(version) = tag(&published, "v")
        && version != "DKIM1"
    {
        problems.push((Status::Fail, format!("v={version}, which verifiers reject"), Some(publish.clone())));
    }
    let key_data = tag(&published, "p").unwrap_or("");
    if key_data.is_empty() {
        problems.push((
            Status::Fail,
            "p= is empty: the key is revoked and every signature with this selector fails".to_string(),
            Some(publish.clone()),
        ));
    } else if Some(key_data) != tag(&expected_tags, "p") {
        problems.push((
            Status::Fail,
            "the published public key does not match the scenario's private key, so every signature fails".to_string(),
            Some(publish.clone()),
        ));
    }
    let published_type = tag(&published, "k").unwrap_or("rsa").to_ascii_lowercase();
    if published_type != signer.key.key_type().tag() {
        problems.push((
            Status::Fail,
            format!("k={published_type}, but the private key is {}", signer.key.key_type().tag()),
            Some(publish.clone()),
        ));
    }
    if tag(&published, "t").is_some_and(|flags| flags.split(':').any(|flag| flag == "y")) {
        problems.push((
            Status::Warn,
            "t=y: the domain says it is testing DKIM, and verifiers may treat failures as if unsigned".to_string(),
            Some(format!("remove t=y from the TXT record at {name}")),
        ));
    }
    if let Some(bits) = signer.key.bits() {
        if bits < 1024 {
            problems.push((
                Status::Fail,
                format!("RSA key of {bits} bits is weak: verifiers reject keys under 1024 bits"),
                Some(format!("sign with a 2048-bit RSA key under a new selector of {}", signer.domain)),
            ));
        } else if bits < 2048 {
            problems.push((
                Status::Warn,
                format!("RSA key of {bits} bits: 2048 bits is the current norm"),
                Some(format!("sign with a 2048-bit RSA key under a new selector of {}", signer.domain)),
            ));
        }
    }
    if problems.is_empty() {
        let size = signer.key.bits().map(|bits| format!(" {bits}-bit")).unwrap_or_default();
        findings.push(finding(
            "dkim",
            &name,
            Status::Pass,
            format!("published{size} {} key matches the private key", signer.key.key_type().tag()),
            None,
        ));
    }
    for (status, detail, fix) in problems {
        findings.push(finding("dkim", &name, status, detail, fix));
    }
}

/// True when `identity` aligns with `from` in DMARC's relaxed (`r`) or
/// strict (`s`) mode.
fn aligned(identity: &str, from: &str, mode: &str) -> bool {
    if mode == "s" {
        identity.eq_ignore_ascii_case(from)
    } else {
        organizational_domain(identity) == organizational_domain(from)
    }
}

/// Checks the From domain's DMARC record (or its organizational domain's)
/// and whether SPF or DKIM as configured would align.
pub async fn check_dmarc(dns: &Dns, scenario: &Scenario, findings: &mut Vec<Finding>) {
    let from_domain = scenario.sender.from.domain().to_ascii_lowercase();
    let mut candidates = vec![from_domain.clone()];
    let organizational = organizational_domain(&from_domain);
    if organizational != from_domain {
        candidates.push(organizational);
    }

    let mut found = None;
    for domain in &candidates {
        let name = format!("_dmarc.{domain}");
        if let Ok(texts) = dns.txt(&name).await
            && let Some(record) =
                texts.into_iter().find(|text| text.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
        {
            found = Some((name, record));
            break;
        }
    }
    let subject = format!("_dmarc.{from_domain}");
    let Some((name, record)) = found else {
        findings.push(finding(
            "dmarc",
            &subject,
            Status::Fail,
            format!("{from_domain} publishes no DMARC record (nor does its organizational domain); bulk senders must publish one"),
            Some(format!("publish TXT _dmarc.{from_domain} \"v=DMARC1; p=none; rua=mailto:dmarc-reports@{from_domain}\"")),
        ));
        return;
    };

    let published = tags(&record);
    let policy = tag(&published, "p").unwrap_or("none").to_ascii_lowercase();
    let percent = tag(&published, "pct").and_then(|value| value.parse::<u32>().ok()).unwrap_or(100);
    let dkim_mode = tag(&published, "adkim").unwrap_or("r").to_ascii_lowercase();
    let spf_mode = tag(&published, "aspf").unwrap_or("r").to_ascii_lowercase();
    findings.push(finding(
        "dmarc",
        &subject,
        Status::Info,
        format!("{name}: p={policy} pct={percent} adkim={dkim_mode} aspf={spf_mode}"),
        None,
    ));
    if !matches!(policy.as_str(), "none" | "quarantine" | "reject") {
        findings.push(finding(
            "dmarc",
            &subject,
            Status::Fail,
            format!("p={policy} is not a valid policy"),
            Some(format!("set p=none, quarantine or reject in {name}")),
        ));
    }
    if tag(&published, "rua").is_none() {
        findings.push(finding(
            "dmarc",
            &subject,
            Status::Warn,
            "no rua: no aggregate reports show what receivers see".to_string(),
            Some(format!("add rua=mailto:dmarc-reports@{from_domain} to {name}")),
        ));
    }

    let mail_from_domain = crate::scenario::address::domain_of(&scenario.sender.mail_from).to_ascii_lowercase();
    let spf_aligns = aligned(&mail_from_domain, &from_domain, &spf_mode);
    let dkim_aligns: Vec<&str> = scenario
        .dkim
        .iter()
        .filter(|signer| aligned(&signer.domain, &from_domain, &dkim_mode))
        .map(|signer| signer.domain.as_str())
        .collect();
    if spf_aligns || !dkim_aligns.is_empty() {
        let mut how = Vec::new();
        if spf_aligns {
            how.push(format!("SPF through MAIL FROM {mail_from_domain}"));
        }
        if let Some(domain) = dkim_aligns.first() {
            how.push(format!("DKIM through d={domain}"));
        }
        findings.push(finding(
            "dmarc",
            &subject,
            Status::Pass,
            format!("aligned with From {from_domain}: {}", how.join(" and ")),
            None,
        ));
    } else {
        let signers = scenario.dkim.iter().map(|signer| format!("d={}", signer.domain)).collect::<Vec<_>>().join(", ");
        let status = if policy == "none" { Status::Warn } else { Status::Fail };
        findings.push(finding(
            "dmarc",
            &subject,
            status,
            format!(
                "neither SPF (MAIL FROM {mail_from_domain}) nor DKIM ({}) aligns with From {from_domain}, so DMARC fails for every message{}",
                if signers.is_empty() { "no signature".to_string() } else { signers },
                if status == Status::Fail { format!(" and p={policy} tells receivers to refuse it") } else { String::new() }
            ),
            Some(format!("sign with d={from_domain} (add a [[dkim]] for it), or send with a MAIL FROM under {from_domain}")),
        ));
    }
}
