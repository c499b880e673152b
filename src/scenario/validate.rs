//! Validation of a parsed scenario into [`Scenario`]. Every check collects
//! its error and goes on, so one `mailcanary check` shows every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};

use serde_spanned::Spanned;

use super::address::{check_addr_spec, check_hostname, domain_of};
use super::raw::{self, ScenarioToml};
use super::*;
use crate::config::{Diagnostics, FieldError, SourceFile, parse_duration};
use crate::message::{DkimKey, DkimSigner, check_template};

/// Collects errors while the tables are checked one by one.
struct Checker<'a> {
    /// The directory that relative paths in the file start from.
    base_dir: &'a FsPath,
    errors: Vec<FieldError>,
}

impl Checker<'_> {
    fn error<T>(&mut self, value: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::at(value, key, message));
    }

    fn error_without_span(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(None, key, message));
    }

    /// Resolves a path written in the scenario relative to the scenario file.
    fn file(&mut self, value: &Spanned<String>, key: &str) -> Option<PathBuf> {
        let path = self.base_dir.join(value.get_ref());
        if path.is_file() {
            Some(path)
        } else {
            self.error(
                value,
                key,
                format!("file {} not found (paths are relative to the scenario file)", path.display()),
            );
            None
        }
    }

    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<std::time::Duration> {
        match parse_duration(value.get_ref()) {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.error(value, key, message);
                None
            }
        }
    }

    fn name(&mut self, value: &Spanned<String>, key: &str) -> String {
        let name = value.get_ref().trim();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid {
            self.error(
                value,
                key,
                format!("invalid name {name:?}; use 1 to 64 letters, digits, dots, hyphens or underscores"),
            );
        }
        name.to_string()
    }

    fn headers(&mut self, table: &BTreeMap<Spanned<String>, Spanned<String>>, key: &str) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        for (name, value) in table {
            let field = name.get_ref();
            let name_valid = !field.is_empty() && field.bytes().all(|b| (33..=126).contains(&b) && b != b':');
            if !name_valid {
                self.error(
                    name,
                    format!("{key}.{field}"),
                    format!("invalid header name {field:?}; use printable ASCII without spaces or colons"),
                );
                continue;
            }
            if value.get_ref().contains(['\r', '\n']) {
                self.error(value, format!("{key}.{field}"), "a header value must not contain line breaks");
                continue;
            }
            headers.push((field.clone(), value.get_ref().clone()));
        }
        headers
    }
}

pub(super) fn validate(source: &SourceFile, raw: ScenarioToml) -> Result<Scenario, Diagnostics> {
    let base_dir = source.path.parent().map(FsPath::to_path_buf).unwrap_or_default();
    let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
    let mut checker = Checker { base_dir: &base_dir, errors: Vec::new() };

    let name = raw.scenario.name.get_ref().trim().to_string();
    if name.is_empty() {
        checker.error(&raw.scenario.name, "scenario.name", "the scenario name is empty");
    }
    let max_messages = match &raw.scenario.max_messages {
        None => DEFAULT_MAX_MESSAGES,
        Some(value) => match u32::try_from(*value.get_ref()) {
            Ok(max) if max > 0 => max,
            _ => {
                checker.error(
                    value,
                    "scenario.max_messages",
                    "max_messages must be a whole number from 1 to 4294967295",
                );
                DEFAULT_MAX_MESSAGES
            }
        },
    };

    let sender = check_sender(&mut checker, &raw.sender);
    let dkim = check_dkim(&mut checker, &raw.dkim);
    let paths = check_paths(&mut checker, &raw.path);
    let mailboxes = check_mailboxes(&mut checker, &raw.mailbox);
    let seeds = check_seeds(&mut checker, &raw.seed, &mailboxes);
    let streams = check_streams(&mut checker, &raw.stream, &paths, &seeds);
    let delivery = check_delivery(&mut checker, &raw.delivery);

    let dns = match &raw.dns {
        None => DnsSettings::default(),
        Some(table) => table.validate(&base_dir, "dns").unwrap_or_else(|errors| {
            checker.errors.extend(errors);
            DnsSettings::default()
        }),
    };

    let seed_domains = super::seed_domains(&seeds);
    let simulator = raw.simulator.as_ref().and_then(|table| {
        match crate::sim::policy::validate(table.get_ref(), "simulator", &seed_domains) {
            Ok(config) => Some(config),
            Err(errors) => {
                checker.errors.extend(errors);
                None
            }
        }
    });

    let mut preflight = PreflightSettings::default();
    for (index, zone) in raw.preflight.dnsbl.iter().enumerate() {
        let name = zone.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
        match check_hostname(&name) {
            Ok(()) => preflight.dnsbl.push(name),
            Err(message) => checker.error(zone, format!("preflight.dnsbl[{index}]"), message),
        }
    }
    let collect = check_collect(&mut checker, &raw.collect);
    let gate = check_gate(&mut checker, &raw.gate);

    if !checker.errors.is_empty() {
        return Err(source.diagnostics(checker.errors));
    }

    let context = Context {
        remediation: raw.context.remediation,
        current_rate_limit: raw.context.current_rate_limit,
        contact: raw.context.contact,
        ticket: raw.context.ticket,
        notes: raw.context.notes,
    };
    Ok(Scenario {
        file: source.path.clone(),
        slug: slug(&name),
        name,
        description: raw.scenario.description,
        max_messages,
        sender: sender.expect("sender is valid when no error was recorded"),
        dkim,
        paths,
        seeds,
        mailboxes,
        streams,
        delivery,
        dns,
        simulator,
        preflight,
        collect,
        gate,
        context,
    })
}

/// Reduces a scenario name to lowercase letters, digits and single hyphens.
fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug: String = slug.chars().take(48).collect();
    if slug.is_empty() { "scenario".into() } else { slug }
}

fn check_sender(checker: &mut Checker, table: &raw::SenderTable) -> Option<Sender> {
    let from = EmailAddress::parse(table.from.get_ref());
    if let Err(message) = &from {
        checker.error(&table.from, "sender.from", message.clone());
    }
    let mail_from = table.mail_from.get_ref().trim().to_string();
    if mail_from.contains('<') {
        checker.error(&table.mail_from, "sender.mail_from", "mail_from is the envelope sender (MAIL FROM) and takes a bare address such as bounces@example.com, without a display name or angle brackets");
    } else if let Err(message) = check_addr_spec(&mail_from) {
        checker.error(&table.mail_from, "sender.mail_from", message);
    }
    let reply_to = table.reply_to.as_ref().and_then(|value| match EmailAddress::parse(value.get_ref()) {
        Ok(address) => Some(address),
        Err(message) => {
            checker.error(value, "sender.reply_to", message);
            None
        }
    });
    Some(Sender { from: from.ok()?, mail_from, reply_to })
}

fn check_dkim(checker: &mut Checker, tables: &[raw::DkimTable]) -> Vec<DkimSigner> {
    let mut signers = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, table) in tables.iter().enumerate() {
        let key = format!("dkim[{index}]");
        let domain = table.domain.get_ref().trim().to_ascii_lowercase();
        if let Err(message) = check_hostname(&domain) {
            checker.error(&table.domain, format!("{key}.domain"), message);
        }
        let selector = table.selector.get_ref().trim().to_string();
        let selector_valid = !selector.is_empty()
            && selector.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !selector_valid {
            checker.error(
                &table.selector,
                format!("{key}.selector"),
                format!("invalid selector {selector:?}; use DNS labels such as s2026"),
            );
        }
        if !seen.insert((domain.clone(), selector.clone())) {
            checker.error(
                &table.selector,
                format!("{key}.selector"),
                format!("selector {selector} of {domain} is declared twice"),
            );
        }
        let mut headers = Vec::new();
        for (position, header) in table.headers.iter().flatten().enumerate() {
            let name = header.get_ref().trim();
            if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
                checker.error(header, format!("{key}.headers[{position}]"), format!("invalid header name {name:?}"));
            } else {
                headers.push(name.to_string());
            }
        }
        if !headers.is_empty() && !headers.iter().any(|name| name.eq_ignore_ascii_case("from")) {
            let first = table.headers.as_ref().and_then(|list| list.first()).expect("headers is not empty");
            checker.error(
                first,
                format!("{key}.headers"),
                "the signed headers must include From (RFC 6376 section 5.4)",
            );
        }
        let expiration =
            table.expiration.as_ref().and_then(|value| checker.duration(value, &format!("{key}.expiration")));

        let key_path = format!("{key}.private_key");
        let Some(file) = checker.file(&table.private_key, &key_path) else { continue };
        let pem = match std::fs::read_to_string(&file) {
            Ok(pem) => pem,
            Err(error) => {
                checker.error(&table.private_key, key_path, format!("cannot read {}: {error}", file.display()));
                continue;
            }
        };
        match DkimKey::from_pem(&pem) {
            Ok(dkim_key) => signers.push(DkimSigner {
                domain,
                selector,
                key: dkim_key,
                headers,
                expiration,
            }),
            Err(error) => checker.error(
                &table.private_key,
                key_path,
                format!("{} is not a usable DKIM key: {error}; use an RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8) private key in PEM", file.display()),
            ),
        }
    }
    signers
}

fn check_paths(checker: &mut Checker, tables: &[raw::PathTable]) -> Vec<Path> {
    let mut paths = Vec::new();
    let mut names = BTreeSet::new();
    for (index, table) in tables.iter().enumerate() {
        let key = format!("path[{index}]");
        let name = checker.name(&table.name, &format!("{key}.name"));
        if !names.insert(name.clone()) {
            checker.error(&table.name, format!("{key}.name"), format!("path {name:?} is declared twice"));
        }
        let pool = match &table.pool {
            Some(pool) => checker.name(pool, &format!("{key}.pool")),
            None => name.clone(),
        };
        let source_ip = table.source_ip.as_ref().and_then(|value| match value.get_ref().trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                checker.error(value, format!("{key}.source_ip"), format!("invalid IP address {:?}", value.get_ref()));
                None
            }
        });
        let relay = table.relay.as_ref().and_then(|value| match parse_relay(value.get_ref()) {
            Ok(relay) => Some(relay),
            Err(message) => {
                checker.error(value, format!("{key}.relay"), message);
                None
            }
        });
        let helo = match &table.helo {
            Some(value) => {
                let helo = value.get_ref().trim().to_string();
                if let Err(message) = check_hostname(&helo) {
                    checker.error(value, format!("{key}.helo"), message);
                }
                helo
            }
            None if table.relay.is_none() => {
                checker.error(
                    &table.name,
                    format!("{key}.helo"),
                    format!(
                        "path {name:?} delivers directly and needs a helo name, such as the PTR name of its source IP"
                    ),
                );
                String::new()
            }
            None => "localhost.localdomain".into(),
        };
        let headers = checker.headers(&table.headers, &format!("{key}.headers"));
        paths.push(Path { name, pool, source_ip, helo, relay, headers });
    }
    if tables.is_empty() {
        checker.error_without_span("path", "the scenario declares no [[path]]; add at least one");
    }
    paths
}

fn parse_relay(text: &str) -> Result<Relay, String> {
    let rest = text.trim().strip_prefix("smtp://").ok_or_else(|| {
        format!("invalid relay {text:?}; write smtp://host:port, for example smtp://mta.example.com:2525")
    })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = split_host_port(rest, 25).map_err(|problem| format!("invalid relay {text:?}: {problem}"))?;
    Ok(Relay { host, port })
}

/// Splits `host`, `host:port`, `[v6]:port` or a bare IP address.
fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip.to_string(), default_port));
    }
    if let Ok(address) = text.parse::<std::net::SocketAddr>() {
        return Ok((address.ip().to_string(), address.port()));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => {
            let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
            (host, port)
        }
        None => (text, default_port),
    };
    if port == 0 {
        return Err("port 0 is not a valid destination".into());
    }
    if host.parse::<IpAddr>().is_err() && !host.eq_ignore_ascii_case("localhost") {
        check_hostname(host)?;
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn check_mailboxes(
    checker: &mut Checker,
    tables: &BTreeMap<Spanned<String>, raw::MailboxTable>,
) -> BTreeMap<String, Mailbox> {
    let mut mailboxes = BTreeMap::new();
    for (name_value, table) in tables {
        let name = checker.name(name_value, &format!("mailbox.{}", name_value.get_ref()));
        let key = format!("mailbox.{name}");
        if let Some(password) = &table.password {
            checker.error(password, format!("{key}.password"), "secrets never sit in a scenario file; set password_env (an environment variable name) or password_file instead");
        }
        let spam_folders: Vec<String> = table.spam_folders.iter().map(|folder| folder.get_ref().clone()).collect();
        let authserv_id = table.authserv_id.as_ref().map(|value| value.get_ref().trim().to_string());
        let mailbox = match (&table.maildir, &table.imap) {
            (Some(root), None) => {
                let imap_options = table.username.is_some()
                    || table.password_env.is_some()
                    || table.password_file.is_some()
                    || table.tls.is_some();
                if imap_options {
                    checker.error(
                        root,
                        &key,
                        "a Maildir mailbox takes no IMAP options (username, password_env, password_file, tls)",
                    );
                }
                let root = checker.base_dir.join(root.get_ref());
                Some(Mailbox::Maildir { root, spam_folders, authserv_id })
            }
            (None, Some(url)) => check_imap(checker, &key, url, table, spam_folders, authserv_id).map(Mailbox::Imap),
            (Some(root), Some(_)) => {
                checker.error(root, &key, "set either maildir or imap, not both");
                None
            }
            (None, None) => {
                checker.error(name_value, &key, "the mailbox needs maildir = \"DIR\" or imap = \"imaps://host\"");
                None
            }
        };
        if let Some(mailbox) = mailbox {
            mailboxes.insert(name, mailbox);
        }
    }
    mailboxes
}

fn check_imap(
    checker: &mut Checker,
    key: &str,
    url: &Spanned<String>,
    table: &raw::MailboxTable,
    spam_folders: Vec<String>,
    authserv_id: Option<String>,
) -> Option<ImapMailbox> {
    let text = url.get_ref().trim();
    let (implicit, rest) = if let Some(rest) = text.strip_prefix("imaps://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("imap://") {
        (false, rest)
    } else {
        checker.error(
            url,
            format!("{key}.imap"),
            format!("invalid IMAP URL {text:?}; write imaps://host[:port] or imap://host[:port]"),
        );
        return None;
    };
    let (host, port) = match split_host_port(rest.trim_end_matches('/'), if implicit { 993 } else { 143 }) {
        Ok(parts) => parts,
        Err(problem) => {
            checker.error(url, format!("{key}.imap"), format!("invalid IMAP URL {text:?}: {problem}"));
            return None;
        }
    };
    let tls = match (implicit, table.tls.as_ref().map(|value| (value, value.get_ref().as_str()))) {
        (true, None) => ImapTls::Implicit,
        (true, Some((value, _))) => {
            checker.error(
                value,
                format!("{key}.tls"),
                "imaps:// always uses implicit TLS; drop tls or use imap:// with tls = \"starttls\"",
            );
            ImapTls::Implicit
        }
        (false, None | Some((_, "starttls"))) => ImapTls::Starttls,
        (false, Some((_, "none"))) => ImapTls::None,
        (false, Some((value, other))) => {
            checker.error(value, format!("{key}.tls"), format!("invalid tls {other:?}; use \"starttls\" or \"none\""));
            ImapTls::Starttls
        }
    };
    let Some(username) = &table.username else {
        checker.error(url, format!("{key}.username"), "an IMAP mailbox needs a username");
        return None;
    };
    let password = match (&table.password_env, &table.password_file) {
        (Some(variable), None) => SecretSource::Env(variable.get_ref().clone()),
        (None, Some(file)) => SecretSource::File(checker.base_dir.join(file.get_ref())),
        (Some(variable), Some(_)) => {
            checker.error(variable, key, "set either password_env or password_file, not both");
            return None;
        }
        (None, None) => {
            checker.error(url, format!("{key}.password_env"), "an IMAP mailbox needs password_env or password_file");
            return None;
        }
    };
    let ca_file = table.ca_file.as_ref().and_then(|value| checker.file(value, &format!("{key}.ca_file")));
    Some(ImapMailbox {
        host,
        port,
        tls,
        username: username.get_ref().clone(),
        password,
        ca_file,
        accept_invalid_certs: table.accept_invalid_certs.unwrap_or(false),
        spam_folders,
        authserv_id,
    })
}

fn check_seeds(checker: &mut Checker, tables: &[raw::SeedTable], mailboxes: &BTreeMap<String, Mailbox>) -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut addresses = BTreeSet::new();
    for (index, table) in tables.iter().enumerate() {
        let key = format!("seed[{index}]");
        let address = table.address.get_ref().trim().to_string();
        if let Err(message) = check_addr_spec(&address) {
            checker.error(&table.address, format!("{key}.address"), message);
            continue;
        }
        if !addresses.insert(address.to_ascii_lowercase()) {
            checker.error(&table.address, format!("{key}.address"), format!("seed {address} is declared twice"));
        }
        let mailbox = table.mailbox.as_ref().map(|value| {
            let name = value.get_ref().trim().to_string();
            if !mailboxes.contains_key(&name) {
                let known: Vec<&str> = mailboxes.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "the scenario declares no [mailbox.NAME] table".to_string()
                } else {
                    format!("declared mailboxes: {}", known.join(", "))
                };
                checker.error(value, format!("{key}.mailbox"), format!("mailbox {name:?} is not declared; {hint}"));
            }
            name
        });
        let domain = domain_of(&address).to_ascii_lowercase();
        seeds.push(Seed { address, domain, mailbox });
    }
    if tables.is_empty() {
        checker.error_without_span("seed", "the scenario declares no [[seed]]; add at least one recipient you control");
    }
    seeds
}

fn check_streams(checker: &mut Checker, tables: &[raw::StreamTable], paths: &[Path], seeds: &[Seed]) -> Vec<Stream> {
    let mut streams = Vec::new();
    let mut names = BTreeSet::new();
    for (index, table) in tables.iter().enumerate() {
        let key = format!("stream[{index}]");
        let name = checker.name(&table.name, &format!("{key}.name"));
        if !names.insert(name.clone()) {
            checker.error(&table.name, format!("{key}.name"), format!("stream {name:?} is declared twice"));
        }
        let role = match table.role.get_ref().as_str() {
            "control" => Role::Control,
            "bulk" => Role::Bulk,
            other => {
                checker.error(
                    &table.role,
                    format!("{key}.role"),
                    format!("invalid role {other:?}; use \"control\" or \"bulk\""),
                );
                Role::Control
            }
        };

        let mut path_indexes = Vec::new();
        for (position, path_name) in table.paths.get_ref().iter().enumerate() {
            match paths.iter().position(|path| &path.name == path_name.get_ref()) {
                Some(found) if path_indexes.contains(&found) => checker.error(
                    path_name,
                    format!("{key}.paths[{position}]"),
                    format!("path {:?} is listed twice", path_name.get_ref()),
                ),
                Some(found) => path_indexes.push(found),
                None => {
                    let known: Vec<&str> = paths.iter().map(|path| path.name.as_str()).collect();
                    checker.error(
                        path_name,
                        format!("{key}.paths[{position}]"),
                        format!("path {:?} is not declared; declared paths: {}", path_name.get_ref(), known.join(", ")),
                    );
                }
            }
        }
        if table.paths.get_ref().is_empty() {
            checker.error(&table.paths, format!("{key}.paths"), "the stream names no path");
        }

        let seed_indexes = match &table.seeds {
            None => (0..seeds.len()).collect(),
            Some(list) => {
                let mut indexes = Vec::new();
                for (position, address) in list.iter().enumerate() {
                    let wanted = address.get_ref().trim();
                    match seeds.iter().position(|seed| seed.address.eq_ignore_ascii_case(wanted)) {
                        Some(found) => indexes.push(found),
                        None => checker.error(
                            address,
                            format!("{key}.seeds[{position}]"),
                            format!(
                                "{wanted:?} is not a declared seed; only [[seed]] addresses are ever used as recipients"
                            ),
                        ),
                    }
                }
                indexes
            }
        };

        let count = match &table.count {
            None => 1,
            Some(value) => match u32::try_from(*value.get_ref()) {
                Ok(count) if count > 0 => count,
                _ => {
                    checker.error(value, format!("{key}.count"), "count must be a whole number of at least 1");
                    1
                }
            },
        };

        let from = table.from.as_ref().and_then(|value| match EmailAddress::parse(value.get_ref()) {
            Ok(address) => Some(address),
            Err(message) => {
                checker.error(value, format!("{key}.from"), message);
                None
            }
        });

        let content = check_content(checker, &key, table);
        let headers = checker.headers(&table.headers, &format!("{key}.headers"));
        if let Some(content) = content {
            streams.push(Stream {
                name,
                role,
                paths: path_indexes,
                seeds: seed_indexes,
                count,
                from,
                content,
                headers,
            });
        }
    }
    if tables.is_empty() {
        checker.error_without_span("stream", "the scenario declares no [[stream]]; add a control stream");
    }
    streams
}

fn check_content(checker: &mut Checker, key: &str, table: &raw::StreamTable) -> Option<Content> {
    for (field, value) in [("subject", &table.subject), ("body", &table.body)] {
        if let Some(value) = value
            && let Err(message) = check_template(value.get_ref())
        {
            checker.error(value, format!("{key}.{field}"), message);
        }
    }
    match (&table.message, &table.subject, &table.body) {
        (Some(file), None, None) => {
            let path = checker.file(file, &format!("{key}.message"))?;
            match std::fs::read(&path) {
                Ok(bytes) => Some(Content::Template { file: path, bytes }),
                Err(error) => {
                    checker.error(file, format!("{key}.message"), format!("cannot read {}: {error}", path.display()));
                    None
                }
            }
        }
        (Some(file), _, _) => {
            checker.error(
                file,
                format!("{key}.message"),
                "a stream takes either message (a template file) or subject and body, not both",
            );
            None
        }
        (None, Some(subject), Some(body)) => {
            Some(Content::Compose { subject: subject.get_ref().clone(), body: body.get_ref().clone() })
        }
        (None, _, _) => {
            checker.error(&table.name, key, "the stream needs subject and body, or message = \"TEMPLATE.eml\"");
            None
        }
    }
}

fn check_delivery(checker: &mut Checker, table: &raw::DeliveryTable) -> Delivery {
    let rate_per_minute = match &table.rate_per_minute {
        None => Some(6),
        Some(value) => match u32::try_from(*value.get_ref()) {
            Ok(0) => None,
            Ok(rate) => Some(rate),
            Err(_) => {
                checker.error(
                    value,
                    "delivery.rate_per_minute",
                    "rate_per_minute must be a whole number, 0 for no pacing",
                );
                None
            }
        },
    };
    let retry = table
        .retry
        .iter()
        .enumerate()
        .filter_map(|(index, value)| checker.duration(value, &format!("delivery.retry[{index}]")))
        .collect();
    let starttls = match table.starttls.as_ref().map(|value| (value, value.get_ref().as_str())) {
        None | Some((_, "opportunistic")) => StartTlsMode::Opportunistic,
        Some((_, "required")) => StartTlsMode::Required,
        Some((_, "never")) => StartTlsMode::Never,
        Some((value, other)) => {
            checker.error(
                value,
                "delivery.starttls",
                format!("invalid starttls {other:?}; use \"opportunistic\", \"required\" or \"never\""),
            );
            StartTlsMode::Opportunistic
        }
    };
    let mut ca_certificates = Vec::new();
    if let Some(value) = &table.ca_file
        && let Some(file) = checker.file(value, "delivery.ca_file")
    {
        match read_certificates(&file) {
            Ok(certificates) => ca_certificates = certificates,
            Err(message) => checker.error(value, "delivery.ca_file", message),
        }
    }
    let mut routes = BTreeMap::new();
    for (domain, target) in &table.routes {
        let domain_name = domain.get_ref().trim().to_ascii_lowercase();
        let key = format!("delivery.routes.\"{domain_name}\"");
        if let Err(message) = check_hostname(&domain_name) {
            checker.error(domain, &key, message);
            continue;
        }
        match split_host_port(target.get_ref().trim(), 25) {
            Ok((host, port)) => {
                routes.insert(domain_name, Route { host, port });
            }
            Err(problem) => {
                checker.error(target, key, format!("invalid route {:?}: {problem}; write host:port", target.get_ref()))
            }
        }
    }
    let mut timeouts = Timeouts::default();
    let fields = [
        (&table.timeouts.connect, "connect", &mut timeouts.connect),
        (&table.timeouts.greeting, "greeting", &mut timeouts.greeting),
        (&table.timeouts.command, "command", &mut timeouts.command),
        (&table.timeouts.data, "data", &mut timeouts.data),
        (&table.timeouts.end_of_data, "end_of_data", &mut timeouts.end_of_data),
    ];
    for (value, name, slot) in fields {
        if let Some(value) = value
            && let Some(duration) = checker.duration(value, &format!("delivery.timeouts.{name}"))
        {
            if duration.is_zero() {
                checker.error(value, format!("delivery.timeouts.{name}"), "a timeout must be longer than zero");
            } else {
                *slot = duration;
            }
        }
    }
    Delivery {
        rate_per_minute,
        retry,
        starttls,
        verify_certificates: table.verify_certificates.unwrap_or(false),
        ca_certificates,
        routes,
        timeouts,
    }
}

fn check_collect(checker: &mut Checker, table: &raw::CollectTable) -> Collect {
    let mut collect = Collect::default();
    if let Some(value) = &table.timeout
        && let Some(timeout) = checker.duration(value, "collect.timeout")
    {
        collect.timeout = timeout;
    }
    if let Some(value) = &table.poll_interval
        && let Some(interval) = checker.duration(value, "collect.poll_interval")
    {
        if interval.is_zero() {
            checker.error(value, "collect.poll_interval", "poll_interval must be longer than zero");
        } else {
            collect.poll_interval = interval;
        }
    }
    collect
}

/// Validates the `[gate]` table; exposed so `gate --scenario` can apply
/// another scenario's thresholds to a saved run.
fn check_gate(checker: &mut Checker, table: &raw::GateTable) -> Gate {
    let mut gate = Gate::default();
    if let Some(methods) = &table.require_auth {
        gate.require_auth.clear();
        for (index, method) in methods.iter().enumerate() {
            let parsed = match method.get_ref().to_ascii_lowercase().as_str() {
                "spf" => AuthMethod::Spf,
                "dkim" => AuthMethod::Dkim,
                "dmarc" => AuthMethod::Dmarc,
                other => {
                    checker.error(
                        method,
                        format!("gate.require_auth[{index}]"),
                        format!("invalid method {other:?}; use \"spf\", \"dkim\" or \"dmarc\""),
                    );
                    continue;
                }
            };
            if !gate.require_auth.contains(&parsed) {
                gate.require_auth.push(parsed);
            }
        }
    }
    if let Some(require_inbox) = table.require_inbox {
        gate.require_inbox = require_inbox;
    }
    for (value, key, slot) in [
        (&table.max_control_deferral_rate, "gate.max_control_deferral_rate", &mut gate.max_control_deferral_rate),
        (&table.max_bulk_deferral_rate, "gate.max_bulk_deferral_rate", &mut gate.max_bulk_deferral_rate),
    ] {
        if let Some(value) = value {
            let rate = *value.get_ref();
            if (0.0..=1.0).contains(&rate) {
                *slot = rate;
            } else {
                checker.error(
                    value,
                    key,
                    format!("{rate} is not a share; write a number from 0.0 to 1.0, such as 0.1 for 10 %"),
                );
            }
        }
    }
    if let Some(value) = &table.critical_min_seeds {
        match u32::try_from(*value.get_ref()) {
            Ok(seeds) if seeds >= 1 => gate.critical_min_seeds = seeds,
            _ => checker.error(
                value,
                "gate.critical_min_seeds",
                "critical_min_seeds must be a whole number of at least 1",
            ),
        }
    }
    if let Some(allow) = table.allow_cleared_deferrals {
        gate.allow_cleared_deferrals = allow;
    }
    gate
}

/// Reads every `CERTIFICATE` block of a PEM file as DER.
fn read_certificates(file: &FsPath) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let certificates: Result<Vec<Vec<u8>>, _> = CertificateDer::pem_file_iter(file)
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?
        .map(|certificate| certificate.map(|der| der.as_ref().to_vec()))
        .collect();
    match certificates {
        Ok(list) if !list.is_empty() => Ok(list),
        Ok(_) => Err(format!("{} holds no PEM CERTIFICATE block", file.display())),
        Err(error) => Err(format!("{} is not a valid PEM certificate file: {error}", file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_keeps_letters_and_digits() {
        assert_eq!(slug("pool-b after remediation"), "pool-b-after-remediation");
        assert_eq!(slug("  ***  "), "scenario");
        assert_eq!(slug("Demo: Proofpoint / b-10"), "demo-proofpoint-b-10");
    }

    #[test]
    fn relay_forms() {
        assert_eq!(
            parse_relay("smtp://pmta.example.com:2525").unwrap(),
            Relay { host: "pmta.example.com".into(), port: 2525 }
        );
        assert_eq!(parse_relay("smtp://127.0.0.1").unwrap(), Relay { host: "127.0.0.1".into(), port: 25 });
        assert_eq!(parse_relay("smtp://[::1]:2525").unwrap(), Relay { host: "::1".into(), port: 2525 });
        assert!(parse_relay("http://x.example.com").is_err());
        assert!(parse_relay("smtp://x.example.com:99999").is_err());
    }
}
