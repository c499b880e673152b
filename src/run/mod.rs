//! `mailcanary run`: plan, start DNS and the simulator when the scenario has
//! them, send every planned message with full transcripts, and write the
//! run directory.

pub mod artifacts;
mod collect;
pub mod record;
mod send;
pub mod summary;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use tokio::sync::mpsc;

use self::artifacts::RunDirectory;
use self::record::*;
use self::send::{Event, Sender};
use crate::dns::Dns;
use crate::error::Error;
use crate::plan::Plan;
use crate::scenario::{Route, Scenario};
use crate::smtp::record::Outcome;

/// Options of the `run` command.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Directory in which run directories are created.
    pub runs_dir: PathBuf,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Run the DNS and identity checks before sending.
    pub preflight: bool,
}

/// A finished run: its directory and the record written there.
#[derive(Debug)]
pub struct RunResult {
    pub directory: PathBuf,
    pub record: RunRecord,
}

/// One line of `events.jsonl`.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
enum JournalEvent<'a> {
    RunStarted {
        at: chrono::DateTime<Utc>,
        run_id: &'a str,
        scenario: &'a str,
        planned: usize,
    },
    Composed {
        at: chrono::DateTime<Utc>,
        sequence: u32,
        token: &'a str,
        message_id: &'a str,
        size: u64,
    },
    ComposeFailed {
        at: chrono::DateTime<Utc>,
        sequence: u32,
        error: &'a str,
    },
    SendStarted {
        at: chrono::DateTime<Utc>,
        attempt: u32,
        sequence: u32,
        try_number: u32,
        path: &'a str,
        seed: &'a str,
    },
    SendFinished {
        at: chrono::DateTime<Utc>,
        attempt: u32,
        sequence: u32,
        try_number: u32,
        outcome: Outcome,
        reply: Option<&'a str>,
        transcript: &'a std::path::Path,
    },
    RunFinished {
        at: chrono::DateTime<Utc>,
        interrupted: bool,
    },
}

/// Runs a validated scenario end to end.
pub async fn run(scenario: Scenario, options: &RunOptions) -> Result<RunResult, Error> {
    let plan = Plan::build(&scenario)?;
    let started_at = Utc::now();
    let mut directory = RunDirectory::create(&options.runs_dir, &scenario.slug, started_at)?;
    tracing::info!(run = %directory.id, directory = %directory.path.display(), planned = plan.messages.len(), "run started");
    let run_id = directory.id.clone();
    directory.journal(&JournalEvent::RunStarted {
        at: started_at,
        run_id: &run_id,
        scenario: &scenario.name,
        planned: plan.messages.len(),
    })?;

    let dns = Arc::new(Dns::start(&scenario.dns).await?);
    let mut routes: HashMap<String, Route> = scenario.delivery.routes.clone().into_iter().collect();
    let simulator = match &scenario.simulator {
        None => None,
        Some(config) => {
            let maildir = directory.path.join("simulator").join("maildir");
            let handle =
                crate::sim::start(config.clone(), dns.authenticator(), maildir.clone()).await.map_err(|error| {
                    Error::Run(format!("cannot start the gateway simulator on {}: {error}", config.listen))
                })?;
            let address = handle.local_addr();
            for domain in scenario.seed_domains() {
                routes.entry(domain).or_insert_with(|| Route { host: address.ip().to_string(), port: address.port() });
            }
            tracing::info!(%address, maildir = %maildir.display(), "gateway simulator started");
            Some((handle, SimulatorInfo { address, hostname: config.hostname.clone(), maildir }))
        }
    };

    let preflight = if options.preflight {
        let preflight = crate::preflight::run(&scenario, &dns).await;
        for failure in preflight.failures() {
            tracing::warn!(check = %failure.check, subject = %failure.subject, detail = %failure.detail, "preflight check failed");
        }
        Some(preflight)
    } else {
        None
    };

    let scenario = Arc::new(scenario);
    let (events, mut receiver) = mpsc::unbounded_channel();
    let sender = Arc::new(Sender::new(scenario.clone(), directory.id.clone(), dns.clone(), routes.clone(), events));

    let mut by_path: BTreeMap<usize, Vec<_>> = BTreeMap::new();
    for message in &plan.messages {
        let index =
            scenario.paths.iter().position(|path| path.name == message.path).expect("planned paths are declared");
        by_path.entry(index).or_default().push(message.clone());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (index, messages) in by_path {
        tasks.spawn(sender.clone().send_path(index, messages));
    }
    drop(sender);

    let mut recorder = Recorder::new(&plan, options.progress);
    let mut interrupted = false;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            event = receiver.recv() => match event {
                Some(event) => recorder.record(&mut directory, event)?,
                None => break,
            },
            _ = &mut interrupt, if !interrupted => {
                tracing::warn!("interrupted: stopping the sends and writing what was recorded");
                interrupted = true;
                tasks.abort_all();
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    recorder.finish();
    tracing::debug!("every send task has finished");

    let simulator = match simulator {
        Some((handle, info)) => {
            handle.shutdown().await;
            Some(info)
        }
        None => None,
    };
    let collected = if interrupted {
        collect::Collected { copies: Vec::new(), errors: Default::default() }
    } else {
        let simulator_maildir = simulator.as_ref().map(|info| (info.maildir.as_path(), info.hostname.as_str()));
        collect::collect_and_verify(&scenario, &directory.path, simulator_maildir, &dns, &mut recorder.messages).await?
    };

    let finished_at = Utc::now();
    directory.journal(&JournalEvent::RunFinished { at: finished_at, interrupted })?;

    let mut record = build_record(
        &scenario,
        &directory.id,
        plan,
        recorder,
        started_at,
        finished_at,
        interrupted,
        &dns,
        routes,
        simulator,
    );
    record.preflight = preflight;
    record.copies = collected.copies;
    record.collection_errors = collected.errors;
    let verdict = crate::gate::evaluate(&record, &scenario.gate);
    let report = crate::report::markdown(&record, &verdict);
    record.verdict = Some(verdict);
    directory.write_record(&record)?;
    let report_path = directory.path.join("report.md");
    std::fs::write(&report_path, report).map_err(|source| Error::Write { path: report_path, source })?;
    tracing::info!(run = %directory.id, "run finished");
    if interrupted {
        return Err(Error::Run(format!(
            "the run was interrupted; what was recorded is in {}",
            directory.path.display()
        )));
    }
    Ok(RunResult { directory: directory.path, record })
}

/// Names the provider behind each seed domain: the one its servers' replies
/// or MX host reveal most often, or `other` when none does.
fn seed_providers(attempts: &[AttemptRecord]) -> std::collections::BTreeMap<String, String> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for attempt in attempts {
        let domain = crate::scenario::address::domain_of(&attempt.seed).to_ascii_lowercase();
        let entry = counts.entry(domain).or_default();
        if let Some(classification) = &attempt.classification
            && classification.provider != crate::classify::Provider::Other
        {
            *entry.entry(classification.provider.as_str().to_string()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(domain, providers)| {
            let provider = providers
                .into_iter()
                .max_by_key(|(_, count)| *count)
                .map_or_else(|| "other".to_string(), |(name, _)| name);
            (domain, provider)
        })
        .collect()
}

/// Reads `run.json` from a run directory.
pub fn load_record(run_directory: &std::path::Path) -> Result<RunRecord, Error> {
    let path = run_directory.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|error| {
        Error::Usage(format!("cannot read {}: {error}; give the run directory that contains run.json", path.display()))
    })?;
    serde_json::from_str(&text)
        .map_err(|error| Error::Usage(format!("{} is not a mailcanary run record: {error}", path.display())))
}

/// Collects events into message and attempt records, writing the journal
/// and transcripts as they arrive.
struct Recorder {
    messages: Vec<MessageRecord>,
    attempts: Vec<AttemptRecord>,
    progress: indicatif::ProgressBar,
}

impl Recorder {
    fn new(plan: &Plan, progress: bool) -> Recorder {
        let messages = plan
            .messages
            .iter()
            .map(|planned| MessageRecord {
                sequence: planned.sequence,
                stream: planned.stream.clone(),
                role: planned.role,
                path: planned.path.clone(),
                pool: planned.pool.clone(),
                seed: planned.seed.clone(),
                token: None,
                message_id: None,
                size: None,
                signatures: Vec::new(),
                attempts: Vec::new(),
                outcome: None,
                cleared_after_retry: false,
                placement: None,
                missing_reason: None,
                error: None,
            })
            .collect();
        let bar = if progress {
            let bar = indicatif::ProgressBar::new(plan.messages.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} attempts {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Recorder { messages, attempts: Vec::new(), progress: bar }
    }

    fn message(&mut self, sequence: u32) -> &mut MessageRecord {
        &mut self.messages[sequence as usize - 1]
    }

    fn record(&mut self, directory: &mut RunDirectory, event: Event) -> Result<(), Error> {
        let now = Utc::now();
        match event {
            Event::Composed { sequence, token, message_id, size, signatures } => {
                directory.journal(&JournalEvent::Composed {
                    at: now,
                    sequence,
                    token: &token,
                    message_id: &message_id,
                    size,
                })?;
                let message = self.message(sequence);
                message.token = Some(token);
                message.message_id = Some(message_id);
                message.size = Some(size);
                message.signatures = signatures;
            }
            Event::ComposeFailed { sequence, error } => {
                directory.journal(&JournalEvent::ComposeFailed { at: now, sequence, error: &error })?;
                self.message(sequence).error = Some(error);
                self.progress.inc(1);
            }
            Event::Started { number, sequence, try_number, path, seed, .. } => {
                directory.journal(&JournalEvent::SendStarted {
                    at: now,
                    attempt: number,
                    sequence,
                    try_number,
                    path: &path,
                    seed: &seed,
                })?;
                self.progress.set_message(format!("{path} -> {seed}"));
            }
            Event::Finished(mut attempt) => {
                let heading = format!(
                    "attempt {} of message {} (try {}), stream {}, path {} (pool {}), seed {}",
                    attempt.number,
                    attempt.sequence,
                    attempt.try_number,
                    attempt.stream,
                    attempt.path,
                    attempt.pool,
                    attempt.seed
                );
                let text: String = if attempt.transactions.is_empty() {
                    let failure =
                        attempt.failure.as_ref().map_or_else(|| "no reason recorded".to_string(), ToString::to_string);
                    format!("=== {heading}\n*** no connection was made: {failure}\n")
                } else {
                    attempt
                        .transactions
                        .iter()
                        .map(|transaction| crate::smtp::transcript::render(transaction, &heading))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                attempt.transcript = directory.write_transcript(&attempt, &text)?;
                directory.journal(&JournalEvent::SendFinished {
                    at: now,
                    attempt: attempt.number,
                    sequence: attempt.sequence,
                    try_number: attempt.try_number,
                    outcome: attempt.outcome,
                    reply: attempt.reply.as_ref().and_then(|reply| reply.lines.first()).map(String::as_str),
                    transcript: &attempt.transcript,
                })?;

                let message = self.message(attempt.sequence);
                let earlier_not_accepted = message.outcome.is_some_and(|outcome| outcome != Outcome::Accepted);
                message.attempts.push(attempt.number);
                message.outcome = Some(attempt.outcome);
                if attempt.outcome == Outcome::Accepted && earlier_not_accepted {
                    message.cleared_after_retry = true;
                }
                if attempt.try_number == 1 {
                    self.progress.inc(1);
                }
                self.attempts.push(*attempt);
            }
        }
        Ok(())
    }

    fn finish(&mut self) {
        self.progress.finish_and_clear();
        self.attempts.sort_by_key(|attempt| attempt.number);
    }
}

#[expect(clippy::too_many_arguments, reason = "assembles the record from every part of the run in one place")]
fn build_record(
    scenario: &Scenario,
    run_id: &str,
    plan: Plan,
    recorder: Recorder,
    started_at: chrono::DateTime<Utc>,
    finished_at: chrono::DateTime<Utc>,
    interrupted: bool,
    dns: &Dns,
    routes: HashMap<String, Route>,
    simulator: Option<SimulatorInfo>,
) -> RunRecord {
    let totals = Totals::from_messages(&recorder.messages);
    let seed_providers = seed_providers(&recorder.attempts);
    let mut routes: Vec<(String, String)> =
        routes.into_iter().map(|(domain, route)| (domain, format!("{}:{}", route.host, route.port))).collect();
    routes.sort();
    RunRecord {
        format: FORMAT_VERSION,
        tool: format!("mailcanary {}", env!("CARGO_PKG_VERSION")),
        run_id: run_id.to_string(),
        scenario: ScenarioInfo {
            name: scenario.name.clone(),
            file: scenario.file.clone(),
            description: scenario.description.clone(),
            max_messages: scenario.max_messages,
        },
        started_at,
        finished_at,
        interrupted,
        sender: SenderInfo { from: scenario.sender.from.to_string(), mail_from: scenario.sender.mail_from.clone() },
        paths: scenario
            .paths
            .iter()
            .map(|path| PathInfo {
                name: path.name.clone(),
                pool: path.pool.clone(),
                source_ip: path.source_ip,
                helo: path.helo.clone(),
                relay: path.relay.as_ref().map(|relay| format!("smtp://{}:{}", relay.host, relay.port)),
                headers: path.headers.clone(),
            })
            .collect(),
        seeds: scenario.seeds.iter().map(|seed| seed.address.clone()).collect(),
        dkim: scenario
            .dkim
            .iter()
            .map(|signer| DkimInfo {
                domain: signer.domain.clone(),
                selector: signer.selector.clone(),
                algorithm: signer.key.key_type().tag().to_string(),
            })
            .collect(),
        delivery: DeliveryInfo {
            starttls: format!("{:?}", scenario.delivery.starttls).to_lowercase(),
            rate_per_minute: scenario.delivery.rate_per_minute,
            retry_seconds: scenario.delivery.retry.iter().map(|delay| delay.as_secs()).collect(),
            routes,
        },
        dns: DnsInfo {
            zones: scenario.dns.zones.clone(),
            nameservers: scenario.dns.nameservers.clone(),
            local_server: dns.local_server(),
        },
        simulator,
        plan: plan.messages,
        messages: recorder.messages,
        attempts: recorder.attempts,
        totals,
        seed_providers,
        preflight: None,
        copies: Vec::new(),
        collection_errors: Default::default(),
        verdict: None,
        context: ContextInfo {
            remediation: scenario.context.remediation.clone(),
            current_rate_limit: scenario.context.current_rate_limit.clone(),
            contact: scenario.context.contact.clone(),
            ticket: scenario.context.ticket.clone(),
            notes: scenario.context.notes.clone(),
        },
    }
}
