//! Preflight: the DNS and identity checks behind every path, run before
//! anything is sent. A control test that fails on a broken record proves
//! nothing about reputation, so these results go into the run record, the
//! evidence packet and the gate.
//!
//! Checks per path: PTR and forward confirmation (FCrDNS), the HELO name,
//! SPF for the path's IP with the MAIL FROM and HELO identities (RFC 7208),
//! and optional DNSBL listings. Per sender: the SPF record itself, every
//! DKIM selector (RFC 6376 section 3.6.1) and the DMARC record and alignment
//! (RFC 7489). Per seed domain: its MX hosts and the provider they reveal.

mod records;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use mail_auth::spf::verify::SpfParameters;
use serde::{Deserialize, Serialize};

use crate::dns::{Dns, DnsError};
use crate::scenario::{Path, Scenario};

pub use records::{organizational_domain, spf_lookup_count};

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    /// Information only: nothing to fix.
    Info,
    /// Works, but weakens the evidence or the sender's standing.
    Warn,
    /// Broken: fix it before a control test can prove anything.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `ptr`, `fcrdns`, `helo`, `spf`, `spf-helo`, `spf-record`, `dkim`,
    /// `dmarc`, `mx` or `dnsbl`.
    pub check: String,
    /// The checked object: a path name, a domain, `selector._domainkey.domain`.
    pub subject: String,
    pub status: Status,
    pub detail: String,
    /// The change to make, naming the record and the value it should contain.
    pub fix: Option<String>,
}

/// Every finding of a preflight, in the order the checks ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preflight {
    pub findings: Vec<Finding>,
}

impl Preflight {
    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|finding| finding.status == Status::Fail)
    }

    /// Returns the findings of one check for one subject.
    pub fn find(&self, check: &str, subject: &str) -> Option<&Finding> {
        self.findings.iter().find(|finding| finding.check == check && finding.subject == subject)
    }

    /// Renders the findings for the terminal, grouped by subject.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut subject = "";
        for finding in &self.findings {
            if finding.subject != subject {
                subject = &finding.subject;
                let _ = writeln!(out, "{subject}");
            }
            let _ = writeln!(out, "  [{:<4}] {:<10} {}", finding.status.as_str(), finding.check, finding.detail);
            if let Some(fix) = &finding.fix {
                let _ = writeln!(out, "         fix: {fix}");
            }
        }
        out
    }
}

fn finding(check: &str, subject: &str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Finding {
    Finding { check: check.into(), subject: subject.into(), status, detail: detail.into(), fix }
}

/// Runs every check of the scenario against `dns`.
pub async fn run(scenario: &Scenario, dns: &Dns) -> Preflight {
    let mut findings = Vec::new();
    for path in &scenario.paths {
        check_path(scenario, dns, path, &mut findings).await;
    }

    let mail_from_domain = crate::scenario::address::domain_of(&scenario.sender.mail_from).to_ascii_lowercase();
    let mut spf_domains = vec![mail_from_domain];
    for path in scenario.paths.iter().filter(|path| path.relay.is_none()) {
        let helo = path.helo.to_ascii_lowercase();
        if !spf_domains.contains(&helo) {
            spf_domains.push(helo);
        }
    }
    for (index, domain) in spf_domains.iter().enumerate() {
        // The HELO identity's record is optional, so its absence is only
        // information; the MAIL FROM domain's is required.
        records::check_spf_record(dns, domain, index == 0, &mut findings).await;
    }

    for signer in &scenario.dkim {
        records::check_dkim(dns, signer, &mut findings).await;
    }
    records::check_dmarc(dns, scenario, &mut findings).await;

    for domain in scenario.seed_domains() {
        check_seed_domain(dns, &domain, &mut findings).await;
    }
    Preflight { findings }
}

async fn check_path(scenario: &Scenario, dns: &Dns, path: &Path, findings: &mut Vec<Finding>) {
    let subject = format!("path {}", path.name);
    let Some(ip) = path.source_ip else {
        let detail = match &path.relay {
            Some(relay) => format!(
                "relay path through {}:{}: the relay's own IP and PTR are what the receiver sees, so check them on the relay",
                relay.host, relay.port
            ),
            None => "no source_ip: the system chooses the address, so PTR and SPF cannot be checked for it".to_string(),
        };
        findings.push(finding("ptr", &subject, Status::Info, detail, None));
        return;
    };

    // Reverse DNS and forward confirmation (FCrDNS). hickory-resolver
    // resolves reverse lookups of loopback addresses to `localhost` itself,
    // so they reveal nothing about published records.
    let ptr_names = if ip.is_loopback() {
        findings.push(finding(
            "ptr",
            &subject,
            Status::Info,
            format!(
                "{ip} is a loopback address: its reverse DNS is answered locally, so PTR and FCrDNS are not checked"
            ),
            None,
        ));
        Vec::new()
    } else {
        match dns.ptr(ip).await {
            Ok(names) if !names.is_empty() => names,
            Ok(_) | Err(DnsError::NotFound { .. }) => {
                findings.push(finding(
                    "ptr",
                    &subject,
                    Status::Fail,
                    format!("{ip} has no PTR record"),
                    Some(format!(
                        "ask the owner of {ip} (its ISP or hosting provider) to publish a PTR record naming {}",
                        path.helo
                    )),
                ));
                Vec::new()
            }
            Err(error) => {
                findings.push(finding(
                    "ptr",
                    &subject,
                    Status::Warn,
                    format!("PTR lookup of {ip} failed: {error}"),
                    None,
                ));
                Vec::new()
            }
        }
    };
    if !ptr_names.is_empty() {
        findings.push(finding("ptr", &subject, Status::Pass, format!("{ip} has PTR {}", ptr_names.join(", ")), None));
        let mut confirmed = None;
        for name in &ptr_names {
            if dns.addresses(name).await.is_ok_and(|addresses| addresses.contains(&ip)) {
                confirmed = Some(name.clone());
                break;
            }
        }
        match &confirmed {
            Some(name) => {
                findings.push(finding("fcrdns", &subject, Status::Pass, format!("{name} resolves back to {ip}"), None))
            }
            None => findings.push(finding(
                "fcrdns",
                &subject,
                Status::Fail,
                format!("no PTR name of {ip} resolves back to it: {} is not forward-confirmed", ptr_names.join(", ")),
                Some(format!("publish an {} record {} -> {ip}", if ip.is_ipv4() { "A" } else { "AAAA" }, ptr_names[0])),
            )),
        }
        for name in &ptr_names {
            if looks_generic(name, ip) {
                findings.push(finding(
                    "ptr",
                    &subject,
                    Status::Warn,
                    format!("PTR {name} looks generic (it spells out the address or names a dynamic pool), which many filters score as a non-dedicated sender"),
                    Some(format!("ask for a PTR in your own domain, such as {}", path.helo)),
                ));
            }
        }
    }

    // The HELO name.
    let helo = path.helo.to_ascii_lowercase();
    match dns.addresses(&helo).await {
        Ok(addresses) if addresses.contains(&ip) => {
            findings.push(finding("helo", &subject, Status::Pass, format!("{helo} resolves to {ip}"), None))
        }
        Ok(addresses) if !addresses.is_empty() => findings.push(finding(
            "helo",
            &subject,
            Status::Warn,
            format!(
                "{helo} resolves to {}, not to {ip}",
                addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
            Some(format!("add {ip} to the A records of {helo}, or use a HELO name that resolves to it")),
        )),
        Ok(_) | Err(DnsError::NotFound { .. }) => findings.push(finding(
            "helo",
            &subject,
            Status::Fail,
            format!("the HELO name {helo} does not resolve"),
            Some(format!("publish an A record {helo} -> {ip}")),
        )),
        Err(error) => {
            findings.push(finding("helo", &subject, Status::Warn, format!("lookup of {helo} failed: {error}"), None))
        }
    }
    if !ptr_names.is_empty() {
        let matches_ptr = ptr_names.iter().any(|name| name.eq_ignore_ascii_case(&helo));
        let same_domain = ptr_names.iter().any(|name| organizational_domain(name) == organizational_domain(&helo));
        if matches_ptr {
            findings.push(finding("helo", &subject, Status::Pass, format!("{helo} matches the PTR"), None));
        } else if same_domain {
            findings.push(finding(
                "helo",
                &subject,
                Status::Info,
                format!("{helo} is in the PTR's domain, not the PTR name itself"),
                None,
            ));
        } else {
            findings.push(finding(
                "helo",
                &subject,
                Status::Warn,
                format!("{helo} does not match the PTR {}", ptr_names.join(", ")),
                Some(format!("use {} as the helo of path {}", ptr_names[0], path.name)),
            ));
        }
    }

    // SPF for this IP, with the MAIL FROM and the HELO identities.
    let authenticator = dns.authenticator();
    let mail_from = &scenario.sender.mail_from;
    let mail_from_domain = crate::scenario::address::domain_of(mail_from).to_ascii_lowercase();
    let output = authenticator
        .verify_spf(SpfParameters::verify_mail_from(ip, &helo, "preflight.mailcanary.invalid", mail_from))
        .await;
    let result = crate::auth::keywords::spf(output.result());
    let (status, fix) = match result {
        "pass" => (Status::Pass, None),
        "temperror" => (
            Status::Warn,
            Some(format!("the SPF lookup of {mail_from_domain} failed temporarily; check its nameservers")),
        ),
        "permerror" => {
            (Status::Fail, Some(format!("the SPF record of {mail_from_domain} is invalid; see the spf-record finding")))
        }
        _ => (
            Status::Fail,
            Some(format!(
                "add ip{}:{ip} to the SPF record (TXT) of {mail_from_domain}",
                if ip.is_ipv4() { 4 } else { 6 }
            )),
        ),
    };
    findings.push(finding("spf", &subject, status, format!("spf={result} for {ip} with MAIL FROM {mail_from}"), fix));

    if path.relay.is_none() {
        let output =
            authenticator.verify_spf(SpfParameters::verify_ehlo(ip, &helo, "preflight.mailcanary.invalid")).await;
        let result = crate::auth::keywords::spf(output.result());
        let status = match result {
            "pass" => Status::Pass,
            "none" => Status::Info,
            _ => Status::Warn,
        };
        let fix = (status == Status::Warn)
            .then(|| format!("publish v=spf1 a -all (or ip4:{ip}) at {helo}, so the HELO identity passes too"));
        findings.push(finding(
            "spf-helo",
            &subject,
            status,
            format!("spf={result} for {ip} with the HELO identity {helo}"),
            fix,
        ));
    }

    for zone in &scenario.preflight.dnsbl {
        check_dnsbl(dns, ip, zone, &subject, findings).await;
    }
}

/// True for PTR names that spell out the address or name a dynamic pool.
fn looks_generic(name: &str, ip: IpAddr) -> bool {
    let name = name.to_ascii_lowercase();
    if let IpAddr::V4(v4) = ip {
        let [a, b, c, d] = v4.octets();
        for separator in ["-", ".", "_"] {
            let forward = format!("{a}{separator}{b}{separator}{c}{separator}{d}");
            let backward = format!("{d}{separator}{c}{separator}{b}{separator}{a}");
            let first_label = name.split('.').next().unwrap_or("");
            if first_label.contains(&forward) || first_label.contains(&backward) {
                return true;
            }
        }
    }
    let first_label = name.split('.').next().unwrap_or("");
    ["dynamic", "dyn-", "dhcp", "pool", "dsl", "cable", "broadband", "client", "customer", "unassigned", "static-ip"]
        .iter()
        .any(|word| first_label.contains(word))
}

/// Looks the IP up in one DNS blocklist zone (`d.c.b.a.zone`).
async fn check_dnsbl(dns: &Dns, ip: IpAddr, zone: &str, subject: &str, findings: &mut Vec<Finding>) {
    let IpAddr::V4(v4) = ip else {
        findings.push(finding("dnsbl", subject, Status::Info, format!("{zone}: IPv6 lookups are not made"), None));
        return;
    };
    let [a, b, c, d] = v4.octets();
    let name = format!("{d}.{c}.{b}.{a}.{}", zone.trim_end_matches('.'));
    match dns.addresses(&name).await {
        Ok(codes) if !codes.is_empty() => {
            let reason = dns.txt(&name).await.ok().and_then(|texts| texts.into_iter().next());
            let codes = codes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            findings.push(finding(
                "dnsbl",
                subject,
                Status::Fail,
                format!(
                    "{ip} is listed on {zone} (return code {codes}){}",
                    reason.map(|reason| format!(": {reason}")).unwrap_or_default()
                ),
                Some(format!("request delisting of {ip} at {zone}'s operator, with the evidence of the cleanup")),
            ));
        }
        Ok(_) | Err(DnsError::NotFound { .. }) => {
            findings.push(finding("dnsbl", subject, Status::Pass, format!("{ip} is not listed on {zone}"), None))
        }
        Err(error) => {
            findings.push(finding("dnsbl", subject, Status::Warn, format!("{zone} lookup failed: {error}"), None))
        }
    }
}

async fn check_seed_domain(dns: &Dns, domain: &str, findings: &mut Vec<Finding>) {
    let subject = format!("seed domain {domain}");
    match dns.mx(domain).await {
        Ok(records) if records.iter().any(|record| record.is_null()) => findings.push(finding(
            "mx",
            &subject,
            Status::Fail,
            format!("{domain} publishes a null MX: it accepts no mail"),
            Some("remove its seeds from the scenario".into()),
        )),
        Ok(records) if !records.is_empty() => {
            let rules = crate::classify::Rules::builtin();
            let providers: BTreeSet<&str> =
                records.iter().map(|record| rules.provider_of_host(&record.exchange).as_str()).collect();
            let hosts = records
                .iter()
                .map(|record| format!("{} {}", record.preference, record.exchange))
                .collect::<Vec<_>>()
                .join(", ");
            findings.push(finding(
                "mx",
                &subject,
                Status::Info,
                format!("MX {hosts}: provider {}", providers.into_iter().collect::<Vec<_>>().join(", ")),
                None,
            ));
        }
        Ok(_) => findings.push(finding(
            "mx",
            &subject,
            Status::Info,
            format!("{domain} has no MX: mail goes to its own address records"),
            None,
        )),
        Err(error) => findings.push(finding(
            "mx",
            &subject,
            Status::Warn,
            format!("MX lookup of {domain} failed: {error}"),
            Some("check the seed address, or route the domain in [delivery] routes".into()),
        )),
    }
}
