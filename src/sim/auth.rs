//! Authentication of accepted messages with mail-auth: SPF (RFC 7208), DKIM
//! (RFC 6376), DMARC (RFC 7489) and optionally iprev, written as an
//! Authentication-Results header (RFC 8601) with the simulator's hostname as
//! authserv-id, and the Received and Return-Path trace headers.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, IprevResult, MessageAuthenticator,
};

/// The receiver's verdicts on one message, as RFC 8601 result keywords
/// (`pass`, `fail`, `softfail`, `neutral`, `none`, `temperror`, `permerror`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthSummary {
    /// SPF result of the MAIL FROM identity, or of the HELO identity for a
    /// null sender.
    pub spf: String,
    /// `pass` when any DKIM signature passes, else the first signature's
    /// result, or `none` without a signature.
    pub dkim: String,
    pub dmarc: String,
    /// Present when the policy sets `iprev = true`.
    pub iprev: Option<String>,
}

impl AuthSummary {
    /// True when a DMARC record applies and the message does not align.
    pub fn dmarc_failed(&self) -> bool {
        self.dmarc == "fail"
    }
}

/// The SMTP envelope and connection facts that the checks use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub client_ip: IpAddr,
    pub helo: &'a str,
    /// Reverse path without angle brackets; empty for the null sender.
    pub mail_from: &'a str,
}

/// The outcome of [`authenticate`]: the header to prepend and its summary.
#[derive(Debug, Clone)]
pub(crate) struct Authentication {
    /// The Authentication-Results header field, ending in CRLF.
    pub header: String,
    pub summary: AuthSummary,
}

/// Runs SPF, DKIM, DMARC and, when `check_iprev` is set, iprev on a message
/// as received. A check that cannot reach DNS yields `temperror` in the
/// header; it is never an error of this function.
pub(crate) async fn authenticate(
    authenticator: &MessageAuthenticator,
    hostname: &str,
    check_iprev: bool,
    envelope: Envelope<'_>,
    message: &[u8],
) -> Authentication {
    let Some(parsed) = AuthenticatedMessage::parse(message) else {
        tracing::debug!(client_ip = %envelope.client_ip, "message headers could not be parsed; no checks run");
        return Authentication {
            header: format!("Authentication-Results: {hostname}; none\r\n"),
            summary: AuthSummary { spf: "none".into(), dkim: "none".into(), dmarc: "none".into(), iprev: None },
        };
    };

    let dkim = authenticator.verify_dkim(&parsed).await;

    // DMARC aligns the SPF identity that was checked: MAIL FROM, or HELO for
    // a null sender (RFC 7489 section 3.1.2).
    let helo_domain = envelope.helo.trim_start_matches('[').trim_end_matches(']');
    let spf_domain = match envelope.mail_from.rsplit_once('@') {
        Some((_, domain)) if !envelope.mail_from.is_empty() => domain,
        _ => helo_domain,
    };
    let spf_parameters = if envelope.mail_from.is_empty() {
        SpfParameters::verify_ehlo(envelope.client_ip, helo_domain, hostname)
    } else {
        SpfParameters::verify_mail_from(envelope.client_ip, helo_domain, hostname, envelope.mail_from)
    };
    let spf = authenticator.verify_spf(spf_parameters).await;

    let dmarc = authenticator.verify_dmarc(DmarcParameters::new(&parsed, &dkim, spf_domain, &spf)).await;

    let iprev = if check_iprev { Some(authenticator.verify_iprev(envelope.client_ip).await) } else { None };

    let mut results = AuthenticationResults::new(hostname).with_dkim_results(&dkim, parsed.from());
    results = if envelope.mail_from.is_empty() {
        results.with_spf_ehlo_result(&spf, envelope.client_ip, helo_domain)
    } else {
        results.with_spf_mailfrom_result(&spf, envelope.client_ip, envelope.mail_from, helo_domain)
    };
    results = results.with_dmarc_result(&dmarc);
    if let Some(iprev) = &iprev {
        results = results.with_iprev_result(iprev, envelope.client_ip);
    }

    let summary = AuthSummary {
        spf: crate::auth::keywords::spf(spf.result()).to_string(),
        dkim: dkim_keyword(&dkim).to_string(),
        dmarc: crate::auth::keywords::dmarc(&dmarc.result()).to_string(),
        iprev: iprev.map(|iprev| iprev_keyword(iprev.result()).to_string()),
    };
    tracing::debug!(
        client_ip = %envelope.client_ip,
        spf = %summary.spf,
        dkim = %summary.dkim,
        dmarc = %summary.dmarc,
        "message authenticated"
    );
    Authentication { header: results.to_header(), summary }
}

/// Formats the Return-Path header that the final delivery adds (RFC 5321
/// section 4.4) from the reverse path.
pub(crate) fn return_path(mail_from: &str) -> String {
    format!("Return-Path: <{mail_from}>\r\n")
}

/// Formats the Received header of a delivered copy (RFC 5321 section 4.4)
/// with the protocol keywords of RFC 3848 (SMTP, ESMTP, ESMTPS). `for` names the
/// recipient only when there is one, so one copy does not reveal the others.
pub(crate) fn received(
    envelope: Envelope<'_>,
    hostname: &str,
    esmtp: bool,
    tls: bool,
    queue_id: &str,
    recipients: &[String],
    time: DateTime<Utc>,
) -> String {
    let protocol = match (esmtp, tls) {
        (true, true) => "ESMTPS",
        (true, false) => "ESMTP",
        (false, true) => "SMTPS",
        (false, false) => "SMTP",
    };
    let address = match envelope.client_ip {
        IpAddr::V4(ip) => format!("[{ip}]"),
        IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
    };
    let recipient = match recipients {
        [only] => format!("\r\n\tfor <{only}>"),
        _ => String::new(),
    };
    format!(
        "Received: from {} ({address})\r\n\tby {hostname} (mailcanary sim) with {protocol} id {queue_id}{recipient};\r\n\t{}\r\n",
        envelope.helo,
        time.to_rfc2822()
    )
}

fn dkim_keyword(outputs: &[DkimOutput<'_>]) -> &'static str {
    if outputs.iter().any(|output| *output.result() == DkimResult::Pass) {
        return "pass";
    }
    outputs.first().map_or("none", |output| crate::auth::keywords::dkim(output.result()).0)
}

fn iprev_keyword(result: &IprevResult) -> &'static str {
    match result {
        IprevResult::Pass => "pass",
        IprevResult::Fail(_) => "fail",
        IprevResult::TempError(_) => "temperror",
        IprevResult::PermError(_) => "permerror",
        IprevResult::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_names_single_recipient() {
        let envelope =
            Envelope { client_ip: "192.0.2.10".parse().unwrap(), helo: "mta.example.com", mail_from: "b@example.com" };
        let time = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc);
        let header = received(envelope, "mx.example.test", true, true, "4F2A9C1B3D", &["s@example.net".into()], time);
        assert_eq!(
            header,
            "Received: from mta.example.com ([192.0.2.10])\r\n\tby mx.example.test (mailcanary sim) with ESMTPS id 4F2A9C1B3D\r\n\tfor <s@example.net>;\r\n\tTue, 1 Dec 2026 10:00:00 +0000\r\n"
        );
    }

    #[test]
    fn received_hides_several_recipients() {
        let envelope = Envelope { client_ip: "2001:db8::1".parse().unwrap(), helo: "mta.example.com", mail_from: "" };
        let headers = received(
            envelope,
            "mx.example.test",
            false,
            false,
            "1",
            &["a@x.test".into(), "b@x.test".into()],
            Utc::now(),
        );
        assert_eq!(return_path(envelope.mail_from), "Return-Path: <>\r\n");
        assert!(headers.contains("([IPv6:2001:db8::1])"), "{headers}");
        assert!(headers.contains("with SMTP id 1;"), "{headers}");
        assert!(!headers.contains("for <"), "{headers}");
    }
}
