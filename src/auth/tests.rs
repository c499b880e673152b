//! Tests of header splitting, Received parsing, the gateway hop and the
//! choice of the trustworthy Authentication-Results field, on realistic
//! headers with documentation addresses.

use std::net::IpAddr;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn headers(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

fn received_fields(headers: &[(String, String)]) -> Vec<Received> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Received"))
        .map(|(_, value)| parse_received(value))
        .collect()
}

fn trusted(authserv_ids: &[&str], gateway_hosts: &[&str]) -> TrustedIds {
    TrustedIds {
        authserv_ids: authserv_ids.iter().map(|id| id.to_string()).collect(),
        gateway_hosts: gateway_hosts.iter().map(|host| host.to_string()).collect(),
    }
}

const SIMULATOR_COPY: &[u8] = include_bytes!("testdata/simulator-copy.eml");

// Header splitting.

#[test]
fn headers_keep_every_instance_in_order() {
    let raw = b"Received: from a by b; Mon, 1 Dec 2025 00:00:00 +0000\r\n\
                Authentication-Results: mx.example.net;\r\n\tspf=pass\r\n\
                Received: from c\r\n by d; Mon, 1 Dec 2025 00:00:00 +0000\r\n\
                Subject: hi\r\n\r\nbody: not a header\r\n";
    let fields = parse_message_headers(raw);

    let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["Received", "Authentication-Results", "Received", "Subject"]);
    assert_eq!(fields[1].1, "mx.example.net;\r\n\tspf=pass");
    assert_eq!(unfold(&fields[2].1), "from c by d; Mon, 1 Dec 2025 00:00:00 +0000");
}

#[test]
fn headers_accept_lf_and_tight_colon() {
    let raw = b"ARC-Authentication-Results:i=1; relay.example; arc=none\nTo: x@example.net\n";
    let fields = parse_message_headers(raw);

    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0].1, "i=1; relay.example; arc=none");
}

#[test]
fn headers_keep_a_field_with_invalid_utf8() {
    let raw = b"Received: from h\xe9te by mx.example.net; Mon, 1 Dec 2025 00:00:00 +0000\r\n\r\n";
    let fields = parse_message_headers(raw);

    assert_eq!(fields.len(), 1);
    assert!(fields[0].1.contains("by mx.example.net"));
}

#[test]
fn headers_skip_mbox_from_line() {
    let raw = b"From sender@example.com Mon Dec  1 00:00:00 2025\r\nSubject: x\r\n\r\n";
    let fields = parse_message_headers(raw);

    assert_eq!(fields, [("Subject".to_string(), "x".to_string())]);
}

#[test]
fn headers_match_mail_parser_on_simulator_copy() {
    let ours = parse_message_headers(SIMULATOR_COPY);
    let message = mail_parser::MessageParser::default().parse(SIMULATOR_COPY).unwrap();
    let theirs: Vec<(&str, &str)> = message.headers_raw().collect();

    assert_eq!(ours.len(), theirs.len());
    for ((our_name, our_value), (their_name, their_value)) in ours.iter().zip(&theirs) {
        assert!(our_name.eq_ignore_ascii_case(their_name), "{our_name} != {their_name}");
        assert_eq!(our_value.trim(), their_value.trim(), "value of {our_name}");
    }
}

// Received parsing.

#[test]
fn received_from_simulator() {
    let fields = parse_message_headers(SIMULATOR_COPY);
    let received = received_fields(&fields);
    assert_eq!(received.len(), 1);
    let hop = &received[0];

    assert_eq!(hop.from.as_deref(), Some("mta10.news.example.com"));
    assert_eq!(hop.client_ip, Some(ip("127.0.0.10")));
    assert_eq!(hop.by.as_deref(), Some("mx1.customer-a.example.net"));
    assert_eq!(hop.by_info.as_deref(), Some("mailcanary sim"));
    assert_eq!(hop.with.as_deref(), Some("ESMTPS"));
    assert!(hop.uses_tls());
    assert_eq!(hop.id.as_deref(), Some("001CDFAB1A"));
    assert_eq!(hop.for_recipient.as_deref(), Some("pp-seed-1@customer-a.example.net"));
    assert_eq!(hop.date.map(|date| date.to_rfc3339()).as_deref(), Some("2026-12-04T20:45:56+00:00"));
}

#[test]
fn received_from_postfix_with_tls_comment() {
    let received = parse_received(
        "from mail.example.org (mail.example.org [192.0.2.1])\r\n\
         \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n\
         \t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\r\n\
         \t(No client certificate requested)\r\n\
         \tby mx.example.net (Postfix) with ESMTPS id 4Q1x2y3z4\r\n\
         \tfor <u@example.net>; Mon, 4 Dec 2023 10:00:00 +0100 (CET)",
    );

    assert_eq!(received.from.as_deref(), Some("mail.example.org"));
    assert_eq!(received.from_info.as_deref(), Some("mail.example.org [192.0.2.1]"));
    assert_eq!(received.client_host.as_deref(), Some("mail.example.org"));
    assert_eq!(received.client_ip, Some(ip("192.0.2.1")));
    assert_eq!(received.by.as_deref(), Some("mx.example.net"));
    assert_eq!(received.by_info.as_deref(), Some("Postfix"));
    assert_eq!(received.with.as_deref(), Some("ESMTPS"));
    assert_eq!(received.id.as_deref(), Some("4Q1x2y3z4"));
    assert_eq!(received.for_recipient.as_deref(), Some("u@example.net"));
    assert_eq!(received.tls_version(), Some("TLSv1.3"));
    assert_eq!(received.date.map(|date| date.to_rfc3339()).as_deref(), Some("2023-12-04T10:00:00+01:00"));
}

#[test]
fn received_from_postfix_without_reverse_dns() {
    let received = parse_received(
        "from helo.example.org (unknown [198.51.100.23])\r\n by mx.example.net (Postfix) with ESMTP id 4Q1; Mon, 4 Dec 2023 10:00:00 +0000",
    );

    assert_eq!(received.client_host.as_deref(), Some("unknown"));
    assert_eq!(received.client_ip, Some(ip("198.51.100.23")));
    assert!(!received.uses_tls());
}

#[test]
fn received_from_microsoft_with_multiword_protocol() {
    let received = parse_received(
        "from EUR01-HE1-obe.outbound.protection.outlook.com (2001:db8:1::5) by\r\n \
         AM0PR01MB5678.eurprd01.prod.outlook.com (2001:db8:2::9) with Microsoft SMTP\r\n \
         Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id\r\n \
         15.20.7633.2 via Frontend Transport; Mon, 4 Dec 2023 09:00:01 +0000",
    );

    assert_eq!(received.client_ip, Some(ip("2001:db8:1::5")));
    assert_eq!(received.by.as_deref(), Some("AM0PR01MB5678.eurprd01.prod.outlook.com"));
    assert_eq!(received.with.as_deref(), Some("Microsoft SMTP Server"));
    assert_eq!(received.id.as_deref(), Some("15.20.7633.2"));
    assert_eq!(received.via.as_deref(), Some("Frontend Transport"));
    assert_eq!(received.tls_version(), Some("TLS1_2"));
    assert!(received.uses_tls());
}

#[test]
fn received_from_exim_with_address_literal() {
    let received = parse_received(
        "from [198.51.100.7] (helo=client.example.org)\r\n\
         \tby mx.example.com with esmtps  (TLS1.3) tls TLS_AES_256_GCM_SHA384\r\n\
         \t(Exim 4.96)\r\n\
         \t(envelope-from <a@example.org>)\r\n\
         \tid 1r5abc-000123-AB\r\n\
         \tfor b@example.com; Tue, 05 Dec 2023 12:00:00 +0000",
    );

    assert_eq!(received.from.as_deref(), Some("[198.51.100.7]"));
    assert_eq!(received.client_ip, Some(ip("198.51.100.7")));
    assert_eq!(received.with.as_deref(), Some("esmtps"));
    assert_eq!(received.id.as_deref(), Some("1r5abc-000123-AB"));
    assert_eq!(received.for_recipient.as_deref(), Some("b@example.com"));
    assert!(received.uses_tls());
}

#[test]
fn received_from_qmail_skips_helo_name() {
    let received = parse_received(
        "from unknown (HELO mail.example.org) (192.0.2.9)\r\n by mx.example.com with SMTP; 5 Dec 2023 12:00:00 -0000",
    );

    assert_eq!(received.client_ip, Some(ip("192.0.2.9")));
    assert_eq!(received.client_host, None);
    assert_eq!(received.with.as_deref(), Some("SMTP"));
    assert!(received.date.is_some());
}

#[test]
fn received_with_ipv6_literal_and_no_from() {
    let literal =
        parse_received("from [IPv6:2001:db8::25] by mx.example.com with ESMTPSA id a1; Tue, 5 Dec 2023 12:00:00 +0000");
    assert_eq!(literal.client_ip, Some(ip("2001:db8::25")));

    let internal = parse_received(
        "by 2002:a05:6a10:1234:b0:5a1:2b3c:4d5e with SMTP id x12csp345678pxb;\r\n        Tue, 5 Dec 2023 04:05:06 -0800 (PST)",
    );
    assert_eq!(internal.from, None);
    assert_eq!(internal.by.as_deref(), Some("2002:a05:6a10:1234:b0:5a1:2b3c:4d5e"));
    assert_eq!(internal.id.as_deref(), Some("x12csp345678pxb"));
    assert_eq!(internal.date.map(|date| date.to_rfc3339()).as_deref(), Some("2023-12-05T04:05:06-08:00"));
}

#[test]
fn received_with_invalid_date_keeps_text() {
    let received = parse_received("from a.example by b.example; yesterday at noon");
    assert_eq!(received.date_text.as_deref(), Some("yesterday at noon"));
    assert_eq!(received.date, None);

    let undated = parse_received("from a.example by b.example");
    assert_eq!(undated.date_text, None);
}

// The gateway hop.

/// Returns the headers of a delivered copy behind Proofpoint and Exchange
/// Online, top first, with a Received and an Authentication-Results field
/// that the sender wrote to look like Proofpoint's.
fn proofpoint_copy() -> Vec<(String, String)> {
    headers(&[
        (
            "Authentication-Results",
            "spf=pass (sender IP is 192.0.2.40)\r\n smtp.mailfrom=news.example.com; dkim=pass (signature was verified)\r\n header.d=news.example.com;dmarc=pass action=none\r\n header.from=news.example.com;compauth=pass reason=100",
        ),
        (
            "Received",
            "from mx0a-001b2d01.pphosted.com (192.0.2.40) by\r\n AM0PR01MB1234.mail.protection.outlook.com (2001:db8:2::1) with Microsoft SMTP\r\n Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id\r\n 15.20.7633.2 via Frontend Transport; Thu, 11 May 2023 10:15:10 +0000",
        ),
        (
            "Received",
            "from pps.reinject (localhost [127.0.0.1])\r\n by mx0a-001b2d01.pphosted.com (PPS) with ESMTPS id 34BA5x9v020211\r\n for <seed@customer-a.example>; Thu, 11 May 2023 10:15:08 +0000",
        ),
        ("X-Proofpoint-Spam-Details", "rule=notspam policy=default score=0 spamscore=0"),
        ("Authentication-Results", "ppops.net;\r\n spf=pass smtp.mailfrom=bounces@news.example.com"),
        (
            "Received",
            "from pps.filterd (m0098409.ppops.net [127.0.0.1])\r\n by mx0a-001b2d01.pphosted.com (8.17.1.19/8.17.1.19) with ESMTP id 34BA2jfT020211;\r\n Thu, 11 May 2023 10:15:07 +0000",
        ),
        (
            "Received",
            "from mta10.news.example.com (mta10.news.example.com [203.0.113.10])\r\n by mx0a-001b2d01.pphosted.com (PPS) with ESMTPS id 3qh2a5g1h9-1\r\n for <seed@customer-a.example>; Thu, 11 May 2023 10:15:05 +0000",
        ),
        (
            "Authentication-Results",
            "ppops.net; spf=pass smtp.mailfrom=bounces@news.example.com; dkim=pass header.d=news.example.com; dmarc=pass",
        ),
        (
            "Received",
            "from attacker.example (attacker.example [198.51.100.66])\r\n by mx0a-001b2d01.pphosted.com (PPS) with ESMTPS id forged;\r\n Thu, 11 May 2023 10:14:00 +0000",
        ),
        (
            "Received",
            "from localhost (localhost [127.0.0.1]) by mta10.news.example.com with ESMTP id q1; Thu, 11 May 2023 10:15:01 +0000",
        ),
        ("Date", "Thu, 11 May 2023 10:15:00 +0000"),
        ("From", "Control <control@news.example.com>"),
    ])
}

#[test]
fn gateway_hop_walks_down_proofpoint_stages() {
    let fields = proofpoint_copy();
    let received = received_fields(&fields);
    let hop = gateway_hop(&received, &trusted(&[], &["pphosted.com"]), message_date(&fields)).unwrap();

    assert_eq!(hop.index, 3);
    assert_eq!(hop.by, "mx0a-001b2d01.pphosted.com");
    assert_eq!(hop.helo.as_deref(), Some("mta10.news.example.com"));
    assert_eq!(hop.client_ip, Some(ip("203.0.113.10")));
    assert_eq!(hop.protocol.as_deref(), Some("ESMTPS"));
    assert!(hop.tls);
    assert_eq!(hop.delay_after_date_seconds, Some(5));
}

#[test]
fn gateway_hop_ignores_forged_lower_received() {
    let fields = proofpoint_copy();
    let received = received_fields(&fields);
    let hop = gateway_hop(&received, &trusted(&[], &["pphosted.com"]), None).unwrap();

    assert_ne!(hop.client_ip, Some(ip("198.51.100.66")));
    assert_eq!(hop.delay_after_date_seconds, None);
}

#[test]
fn gateway_hop_chain_transit_spans_all_dated_fields() {
    let fields = proofpoint_copy();
    let received = received_fields(&fields);
    let hop = gateway_hop(&received, &trusted(&[], &["pphosted.com"]), None).unwrap();

    // From the sender's own first hop (10:15:01) to Exchange (10:15:10).
    assert_eq!(hop.chain_transit_seconds, Some(9));
}

#[test]
fn gateway_hop_of_simulator_copy() {
    let fields = parse_message_headers(SIMULATOR_COPY);
    let received = received_fields(&fields);
    let gateway = trusted(&["mx1.customer-a.example.net"], &[]);
    let hop = gateway_hop(&received, &gateway, message_date(&fields)).unwrap();

    assert_eq!(hop.index, 0);
    assert_eq!(hop.client_ip, Some(ip("127.0.0.10")));
    assert!(hop.tls);
    assert_eq!(hop.delay_after_date_seconds, Some(0));
    assert_eq!(hop.chain_transit_seconds, None);
}

#[test]
fn gateway_hop_absent_when_gateway_not_in_chain() {
    let fields = proofpoint_copy();
    let received = received_fields(&fields);

    assert_eq!(gateway_hop(&received, &trusted(&[], &["mimecast.com"]), None), None);
}

#[test]
fn gateway_host_matches_only_whole_labels() {
    let gateway = trusted(&[], &["pphosted.com"]);

    assert!(gateway.matches_host("mx0a-001b2d01.pphosted.com."));
    assert!(gateway.matches_host("PPHOSTED.COM"));
    assert!(!gateway.matches_host("notpphosted.com"));
}

// Choosing the trustworthy Authentication-Results field.

#[test]
fn receiver_results_of_simulator_copy() {
    let fields = parse_message_headers(SIMULATOR_COPY);
    let (index, results) = receiver_results(&fields, &TrustedIds::default()).unwrap();

    assert_eq!(index, 1);
    assert_eq!(results.authserv_id.as_deref(), Some("mx1.customer-a.example.net"));
    let methods: Vec<&str> = results.results.iter().map(|result| result.method.as_str()).collect();
    assert_eq!(methods, ["dkim", "dkim", "spf", "dmarc"]);
    assert!(results.results.iter().all(|result| result.result == "pass"));
    assert_eq!(results.method("dmarc").next().unwrap().prop("policy.dmarc"), Some("reject"));
}

#[test]
fn receiver_results_prefers_trusted_authserv_id() {
    let fields = proofpoint_copy();
    let (index, results) = receiver_results(&fields, &trusted(&["ppops.net"], &["pphosted.com"])).unwrap();

    assert_eq!(index, 4);
    assert_eq!(results.results.len(), 1);
    assert_eq!(results.results[0].method, "spf");
}

#[test]
#[ignore = "an authserv-id alone cannot place the boundary when its hosts have another domain"]
fn receiver_results_proofpoint_id_without_host() {
    let fields = proofpoint_copy();
    let found = receiver_results(&fields, &trusted(&["ppops.net"], &[]));

    assert_eq!(found.map(|(index, _)| index), Some(4));
}

#[test]
fn receiver_results_infers_top_most_above_gateway() {
    let fields = proofpoint_copy();
    let (index, results) = receiver_results(&fields, &trusted(&[], &["pphosted.com"])).unwrap();

    assert_eq!(index, 0);
    assert_eq!(results.authserv_id, None);
}

#[test]
fn receiver_results_never_uses_forged_lower_field() {
    let fields = headers(&[
        (
            "Received",
            "from mta10.news.example.com ([203.0.113.10])\r\n\tby mx1.customer-a.example.net (mailcanary sim) with ESMTPS id 01;\r\n\tFri, 4 Dec 2026 20:45:56 +0000",
        ),
        (
            "Authentication-Results",
            "mx1.customer-a.example.net; spf=pass smtp.mailfrom=news.example.com; dkim=pass; dmarc=pass",
        ),
        ("Date", "Fri, 4 Dec 2026 20:45:55 +0000"),
    ]);

    assert_eq!(receiver_results(&fields, &TrustedIds::default()), None);
    assert_eq!(receiver_results(&fields, &trusted(&["mx1.customer-a.example.net"], &[])), None);
}

#[test]
fn receiver_results_skips_forged_field_with_trusted_id() {
    let fields = headers(&[
        ("Authentication-Results", "mx1.customer-a.example.net; spf=fail smtp.mailfrom=news.example.com"),
        (
            "Received",
            "from mta10.news.example.com ([203.0.113.10])\r\n\tby mx1.customer-a.example.net (mailcanary sim) with ESMTPS id 01;\r\n\tFri, 4 Dec 2026 20:45:56 +0000",
        ),
        ("Authentication-Results", "mx1.customer-a.example.net; spf=pass smtp.mailfrom=news.example.com"),
    ]);
    let all = receiver_results_all(&fields, &trusted(&["mx1.customer-a.example.net"], &[]));

    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, 0);
    assert_eq!(all[0].1.results[0].result, "fail");
}

#[test]
fn receiver_results_none_without_gateway_received() {
    let fields = proofpoint_copy();
    assert_eq!(receiver_results(&fields, &trusted(&[], &["mimecast.com"])), None);

    let untraced = headers(&[("Authentication-Results", "mx.example.net; spf=pass")]);
    assert_eq!(receiver_results(&untraced, &TrustedIds::default()), None);
}

#[test]
fn receiver_results_all_collects_one_field_per_method() {
    let fields = headers(&[
        (
            "Authentication-Results",
            "smtp.subspace.kernel.org;\r\n dkim=pass (2048-bit key) header.d=example.com header.i=@example.com header.b=\"GV68HtCk\"",
        ),
        ("Authentication-Results", "smtp.subspace.kernel.org; arc=none smtp.client-ip=192.0.2.173"),
        ("Authentication-Results", "smtp.subspace.kernel.org; dmarc=pass (p=none dis=none) header.from=example.com"),
        ("Authentication-Results", "smtp.subspace.kernel.org; spf=none smtp.helo=mx0b-0016f401.pphosted.com"),
        (
            "Received",
            "from mx0b-0016f401.pphosted.com (mx0b-0016f401.pphosted.com [192.0.2.173])\r\n\t(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits))\r\n\t(No client certificate requested)\r\n\tby smtp.subspace.kernel.org (Postfix) with ESMTPS id 1A2B3C\r\n\tfor <list@vger.kernel.org>; Tue,  5 Dec 2023 10:00:00 +0000 (UTC)",
        ),
        ("Authentication-Results", "smtp.subspace.kernel.org; dkim=pass header.d=example.com"),
    ]);
    let all = receiver_results_all(&fields, &trusted(&["smtp.subspace.kernel.org"], &[]));

    let indexes: Vec<usize> = all.iter().map(|(index, _)| *index).collect();
    assert_eq!(indexes, [0, 1, 2, 3]);
}

#[test]
fn receiver_results_falls_back_to_arc_above_gateway() {
    // Gmail writes its Authentication-Results below its own Received field,
    // where a sender could have written one, and its ARC set above it.
    let fields = headers(&[
        ("ARC-Seal", "i=1; a=rsa-sha256; t=1701770000; cv=none; d=google.com; s=arc-20160816; b=abc"),
        (
            "ARC-Authentication-Results",
            "i=1; mx.google.com;\r\n dkim=pass header.i=@news.example.com header.s=rsa2026 header.b=Ie9F1b04;\r\n spf=pass (google.com: domain of bounces@news.example.com designates 203.0.113.10 as permitted sender) smtp.mailfrom=bounces@news.example.com;\r\n dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=news.example.com",
        ),
        ("Return-Path", "<bounces@news.example.com>"),
        (
            "Received",
            "from mta10.news.example.com (mta10.news.example.com. [203.0.113.10])\r\n by mx.google.com with ESMTPS id x5si1234567qkb.12.2023.12.05.02.00.00\r\n for <seed@gmail.example>\r\n (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);\r\n Tue, 05 Dec 2023 02:00:00 -0800 (PST)",
        ),
        (
            "Received-SPF",
            "pass (google.com: domain of bounces@news.example.com designates 203.0.113.10 as permitted sender) client-ip=203.0.113.10;",
        ),
        (
            "Authentication-Results",
            "mx.google.com; dkim=pass header.i=@news.example.com; spf=pass smtp.mailfrom=bounces@news.example.com; dmarc=pass",
        ),
    ]);
    let (index, results) = receiver_results(&fields, &trusted(&["mx.google.com"], &[])).unwrap();

    assert_eq!(index, 1);
    assert_eq!(results.instance, Some(1));
    assert_eq!(results.results.len(), 3);
}

#[test]
fn received_spf_below_gmail_received_parses() {
    let fields = headers(&[(
        "Received-SPF",
        "pass (google.com: domain of bounces@news.example.com designates 203.0.113.10 as permitted sender) client-ip=203.0.113.10;",
    )]);
    let spf = parse_received_spf(&fields[0].1).unwrap();

    assert_eq!(spf.result, "pass");
    assert_eq!(spf.prop("client-ip"), Some("203.0.113.10"));
}
