//! The send loop: one task per path, pacing attempts at the path's rate,
//! trying MX hosts in order, and retrying deferrals on the scenario's
//! schedule to see whether they clear.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

use super::record::{AttemptRecord, ReplyReading};
use crate::classify::ReplyContext;
use crate::dns::Dns;
use crate::message::{self, ComposeContext, TrackingToken};
use crate::plan::PlannedMessage;
use crate::scenario::{Content, Path, Route, Scenario, StartTlsMode};
use crate::smtp::client::{self, AttemptRequest};
use crate::smtp::record::{Failure, Outcome, Transaction};

/// An event the send tasks report to the recorder, in the order it happened.
#[derive(Debug)]
pub enum Event {
    Composed { sequence: u32, token: String, message_id: String, size: u64, signatures: Vec<String> },
    ComposeFailed { sequence: u32, error: String },
    Started { number: u32, sequence: u32, try_number: u32, path: String, seed: String },
    Finished(Box<AttemptRecord>),
}

/// A host to connect to, and the name it was found under.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    address: SocketAddr,
}

/// Shared by every path task of one run.
pub struct Sender {
    pub scenario: Arc<Scenario>,
    pub run_id: String,
    pub dns: Arc<Dns>,
    /// Lowercased domain to route: the scenario's routes, plus the
    /// simulator for every seed domain the scenario did not route itself.
    pub routes: HashMap<String, Route>,
    pub events: mpsc::UnboundedSender<Event>,
    attempt_numbers: AtomicU32,
    /// Delivery targets per domain, looked up once per run rather than once
    /// per message.
    targets: Mutex<HashMap<String, Result<Vec<Target>, Failure>>>,
}

impl Sender {
    pub fn new(
        scenario: Arc<Scenario>,
        run_id: String,
        dns: Arc<Dns>,
        routes: HashMap<String, Route>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Sender {
        Sender {
            scenario,
            run_id,
            dns,
            routes,
            events,
            attempt_numbers: AtomicU32::new(0),
            targets: Mutex::new(HashMap::new()),
        }
    }

    /// Sends every planned message of one path, one attempt at a time.
    pub async fn send_path(self: Arc<Self>, path_index: usize, messages: Vec<PlannedMessage>) {
        let path = &self.scenario.paths[path_index];
        let interval =
            self.scenario.delivery.rate_per_minute.map(|rate| Duration::from_secs_f64(60.0 / f64::from(rate)));
        let retry = &self.scenario.delivery.retry;

        let by_sequence: HashMap<u32, &PlannedMessage> =
            messages.iter().map(|message| (message.sequence, message)).collect();
        let mut queue: BinaryHeap<Reverse<(Instant, u32, u32)>> = BinaryHeap::new();
        let start = Instant::now();
        for message in &messages {
            queue.push(Reverse((start, message.sequence, 1)));
        }

        let mut composed: HashMap<u32, Arc<[u8]>> = HashMap::new();
        let mut next_start = start;
        while let Some(Reverse((due, sequence, try_number))) = queue.pop() {
            let planned = by_sequence[&sequence];
            tokio::time::sleep_until(due.max(next_start)).await;
            if let Some(interval) = interval {
                next_start = Instant::now() + interval;
            }

            let bytes = match composed.get(&sequence) {
                Some(bytes) => bytes.clone(),
                None => match self.compose(path, planned) {
                    Ok(bytes) => {
                        composed.insert(sequence, bytes.clone());
                        bytes
                    }
                    Err(error) => {
                        tracing::error!(sequence, path = %path.name, %error, "cannot compose the message");
                        let _ = self.events.send(Event::ComposeFailed { sequence, error });
                        continue;
                    }
                },
            };

            let record = self.attempt(path, planned, try_number, bytes).await;
            let retry_delay = retry.get(try_number as usize - 1).copied();
            let retry_next = retry_delay.filter(|_| is_retryable(&record));
            tracing::info!(
                attempt = record.number,
                sequence,
                try_number,
                path = %path.name,
                seed = %planned.seed,
                outcome = ?record.outcome,
                reply = record.reply.as_ref().and_then(|reply| reply.lines.first()).map(String::as_str).unwrap_or("-"),
                "attempt finished"
            );
            let _ = self.events.send(Event::Finished(Box::new(record)));
            if let Some(delay) = retry_next {
                queue.push(Reverse((Instant::now() + delay, sequence, try_number + 1)));
            } else {
                composed.remove(&sequence);
            }
        }
    }

    /// Builds and signs one planned message. The bytes are kept across
    /// retries, as an MTA's queue keeps a deferred message unchanged.
    fn compose(&self, path: &Path, planned: &PlannedMessage) -> Result<Arc<[u8]>, String> {
        let scenario = &self.scenario;
        let stream = scenario
            .streams
            .iter()
            .find(|stream| stream.name == planned.stream)
            .expect("every planned message names a declared stream");
        let from = stream.from.clone().unwrap_or_else(|| scenario.sender.from.clone());
        let token = TrackingToken::generate();
        let now = Utc::now();

        let mut extra_headers = path.headers.clone();
        extra_headers.extend(stream.headers.iter().cloned());
        if let Some(reply_to) = &scenario.sender.reply_to {
            extra_headers.push(("Reply-To".into(), reply_to.to_string()));
        }
        let context = ComposeContext {
            from_name: from.display_name.clone(),
            from_address: from.address.clone(),
            to: planned.seed.clone(),
            run_id: self.run_id.clone(),
            path: planned.path.clone(),
            pool: Some(planned.pool.clone()),
            stream: planned.stream.clone(),
            sequence: planned.sequence,
            token: token.clone(),
            time: now,
            extra_headers,
        };
        let unsigned = match &stream.content {
            Content::Compose { subject, body } => message::compose_control(&context, subject, body),
            Content::Template { bytes, .. } => message::compose_bulk(&context, bytes),
        }
        .map_err(|error| error.to_string())?;
        let signed = message::sign(&unsigned, &scenario.dkim, now).map_err(|error| error.to_string())?;

        let signatures = scenario.dkim.iter().map(|signer| format!("{}/{}", signer.domain, signer.selector)).collect();
        let _ = self.events.send(Event::Composed {
            sequence: planned.sequence,
            token: token.as_str().to_string(),
            message_id: format!("<{}>", token.message_id(from.domain())),
            size: signed.len() as u64,
            signatures,
        });
        Ok(signed.into())
    }

    /// Makes one attempt: resolves where the seed's mail goes, then connects
    /// to each target in order until one replies.
    async fn attempt(
        &self,
        path: &Path,
        planned: &PlannedMessage,
        try_number: u32,
        message: Arc<[u8]>,
    ) -> AttemptRecord {
        let number = self.attempt_numbers.fetch_add(1, Ordering::SeqCst) + 1;
        let started_at = Utc::now();
        let _ = self.events.send(Event::Started {
            number,
            sequence: planned.sequence,
            try_number,
            path: path.name.clone(),
            seed: planned.seed.clone(),
        });

        let domain = crate::scenario::address::domain_of(&planned.seed).to_ascii_lowercase();
        let mut transactions: Vec<Transaction> = Vec::new();
        let mut failure = None;
        match self.targets(path, &domain).await {
            Err(dns_failure) => failure = Some(dns_failure),
            Ok(targets) => {
                for target in targets {
                    let request = self.request(path, planned, &target, message.clone());
                    let transaction = client::attempt(&request).await;
                    let unreachable = matches!(
                        transaction.failure,
                        Some(Failure::ConnectionRefused { .. })
                            | Some(Failure::TimedOut { step: crate::smtp::record::Step::Connect, .. })
                    );
                    transactions.push(transaction);
                    if !unreachable {
                        break;
                    }
                }
            }
        }

        let last = transactions.last();
        let outcome = last.map_or(Outcome::Failed, |transaction| transaction.outcome);
        let reply = last.and_then(|transaction| {
            transaction
                .decisive
                .and_then(|index| transaction.exchanges.get(index))
                .and_then(|exchange| exchange.reply.clone())
        });
        if failure.is_none() {
            failure = last.and_then(|transaction| transaction.failure.clone());
        }
        let classification = reply.as_ref().map(|reply| {
            let stage = last
                .and_then(|transaction| transaction.decisive.and_then(|index| transaction.exchanges.get(index)))
                .map(|exchange| exchange.step);
            let context = ReplyContext {
                mx_host: last.map(|transaction| transaction.mx_host.clone()),
                stage,
                source_ip: path.source_ip,
            };
            crate::classify::classify(reply, &context)
        });
        let mut negative_replies = Vec::new();
        for (transaction_index, transaction) in transactions.iter().enumerate() {
            for (exchange_index, exchange) in transaction.exchanges.iter().enumerate() {
                let Some(reply) = exchange.reply.as_ref().filter(|reply| reply.code.is_some_and(|code| code >= 400))
                else {
                    continue;
                };
                let context = ReplyContext {
                    mx_host: Some(transaction.mx_host.clone()),
                    stage: Some(exchange.step),
                    source_ip: path.source_ip,
                };
                negative_replies.push(ReplyReading {
                    transaction: transaction_index,
                    exchange: exchange_index,
                    step: exchange.step,
                    classification: crate::classify::classify(reply, &context),
                });
            }
        }
        // A reply naming another IP than the one bound is only meaningful
        // when it refuses the mail for that IP's sake.
        let ip_mismatch = match (&classification, path.source_ip) {
            (Some(classification), Some(bound)) if outcome != Outcome::Accepted => {
                crate::classify::ip_mismatch(classification, bound)
            }
            _ => None,
        };
        AttemptRecord {
            number,
            sequence: planned.sequence,
            try_number,
            stream: planned.stream.clone(),
            role: planned.role,
            path: path.name.clone(),
            pool: path.pool.clone(),
            source_ip: path.source_ip,
            helo: path.helo.clone(),
            seed: planned.seed.clone(),
            started_at,
            finished_at: Utc::now(),
            outcome,
            reply,
            failure,
            classification,
            ip_mismatch,
            negative_replies,
            transactions,
            transcript: Default::default(),
        }
    }

    fn request(&self, path: &Path, planned: &PlannedMessage, target: &Target, message: Arc<[u8]>) -> AttemptRequest {
        let delivery = &self.scenario.delivery;
        let starttls = match delivery.starttls {
            StartTlsMode::Opportunistic => client::StartTls::Opportunistic,
            StartTlsMode::Required => client::StartTls::Required,
            StartTlsMode::Never => client::StartTls::Never,
        };
        let timeouts = client::Timeouts {
            connect: delivery.timeouts.connect,
            greeting: delivery.timeouts.greeting,
            command: delivery.timeouts.command,
            data_initiation: delivery.timeouts.data,
            end_of_data: delivery.timeouts.end_of_data,
            ..client::Timeouts::default()
        };
        AttemptRequest {
            server: target.address,
            mx_host: target.host.clone(),
            source_ip: path.source_ip,
            helo: path.helo.clone(),
            starttls,
            tls: crate::smtp::TlsPolicy {
                verify: delivery.verify_certificates,
                extra_roots: delivery
                    .ca_certificates
                    .iter()
                    .map(|der| rustls_pki_types::CertificateDer::from(der.clone()))
                    .collect(),
                server_name: Some(target.host.clone()),
            },
            mail_from: self.scenario.sender.mail_from.clone(),
            rcpt_to: planned.seed.clone(),
            message,
            timeouts,
        }
    }

    /// Returns where mail for `domain` on `path` goes: the path's relay, a
    /// route, or the domain's MX hosts (RFC 5321 section 5.1).
    async fn targets(&self, path: &Path, domain: &str) -> Result<Vec<Target>, Failure> {
        let (key, route) = match (&path.relay, self.routes.get(domain)) {
            (Some(relay), _) => (
                format!("relay {}:{}", relay.host, relay.port),
                Some(Route { host: relay.host.clone(), port: relay.port }),
            ),
            (None, Some(route)) => (format!("route {domain}"), Some(route.clone())),
            (None, None) => (format!("mx {domain}"), None),
        };
        let mut cache = self.targets.lock().await;
        if let Some(found) = cache.get(&key) {
            return found.clone();
        }
        let resolved = match route {
            Some(route) => self.resolve_host(&route.host, route.port).await,
            None => self.resolve_mx(domain).await,
        };
        if let Ok(targets) = &resolved {
            tracing::debug!(%key, targets = ?targets.iter().map(|t| format!("{} {}", t.host, t.address)).collect::<Vec<_>>(), "delivery targets");
        }
        cache.insert(key, resolved.clone());
        resolved
    }

    async fn resolve_host(&self, host: &str, port: u16) -> Result<Vec<Target>, Failure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![Target { host: host.to_string(), address: SocketAddr::new(ip, port) }]);
        }
        let addresses = self.dns.addresses(host).await.map_err(|error| Failure::Dns { detail: error.to_string() })?;
        if addresses.is_empty() {
            return Err(Failure::Dns { detail: format!("{host} has no A or AAAA record") });
        }
        Ok(addresses
            .into_iter()
            .map(|ip| Target { host: host.to_string(), address: SocketAddr::new(ip, port) })
            .collect())
    }

    async fn resolve_mx(&self, domain: &str) -> Result<Vec<Target>, Failure> {
        let found =
            self.dns.delivery_targets(domain).await.map_err(|error| Failure::Dns { detail: error.to_string() })?;
        let targets: Vec<Target> = found
            .into_iter()
            .flat_map(|target| {
                let host = target.host;
                target
                    .addresses
                    .into_iter()
                    .map(move |ip| Target { host: host.clone(), address: SocketAddr::new(ip, 25) })
            })
            .collect();
        if targets.is_empty() {
            return Err(Failure::Dns { detail: format!("no MX host of {domain} has an address") });
        }
        Ok(targets)
    }
}

/// Returns whether an attempt is retried. Deferrals and transient failures
/// are. Rejections, a source IP that cannot be bound and DNS failures are
/// not, because a retry would only repeat them.
fn is_retryable(record: &AttemptRecord) -> bool {
    match record.outcome {
        Outcome::Deferred => true,
        Outcome::Accepted | Outcome::Rejected => false,
        Outcome::Failed => !matches!(
            record.failure,
            Some(Failure::Bind { .. }) | Some(Failure::Dns { .. }) | Some(Failure::StarttlsNotOffered)
        ),
    }
}
