//! The plan: every message a run will send, as stream × path × seed × copy,
//! checked against the scenario's `max_messages` before anything is sent.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::scenario::{Role, Scenario};

/// One message to send: which stream, over which path, to which seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMessage {
    /// 1-based position in the plan, stable across a run and its record.
    pub sequence: u32,
    pub stream: String,
    pub role: Role,
    pub path: String,
    pub pool: String,
    pub seed: String,
    /// 1-based copy number when a stream sends several messages per path and seed.
    pub copy: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub messages: Vec<PlannedMessage>,
}

/// The plan is larger than the scenario allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the plan has {planned} messages, above max_messages = {max} in {file}; nothing was sent. Raise [scenario] max_messages, or remove paths, seeds or streams"
)]
pub struct PlanTooLarge {
    pub planned: u64,
    pub max: u32,
    pub file: String,
}

impl Plan {
    /// Expands the scenario's streams. The count is checked before any
    /// message is materialised, so an oversized plan costs no memory.
    pub fn build(scenario: &Scenario) -> Result<Plan, PlanTooLarge> {
        let planned: u64 = scenario
            .streams
            .iter()
            .map(|stream| stream.paths.len() as u64 * stream.seeds.len() as u64 * u64::from(stream.count))
            .sum();
        if planned > u64::from(scenario.max_messages) {
            return Err(PlanTooLarge {
                planned,
                max: scenario.max_messages,
                file: scenario.file.display().to_string(),
            });
        }

        let mut messages = Vec::with_capacity(planned as usize);
        for stream in &scenario.streams {
            for &path_index in &stream.paths {
                let path = &scenario.paths[path_index];
                for &seed_index in &stream.seeds {
                    for copy in 1..=stream.count {
                        messages.push(PlannedMessage {
                            sequence: messages.len() as u32 + 1,
                            stream: stream.name.clone(),
                            role: stream.role,
                            path: path.name.clone(),
                            pool: path.pool.clone(),
                            seed: scenario.seeds[seed_index].address.clone(),
                            copy,
                        });
                    }
                }
            }
        }
        Ok(Plan { messages })
    }

    /// Renders the plan as `check` prints it: totals per stream and path,
    /// then per seed domain.
    pub fn render(&self, scenario: &Scenario) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario: {} ({})", scenario.name, scenario.file.display());
        let _ = writeln!(out, "messages: {} (max_messages = {})", self.messages.len(), scenario.max_messages);

        // Streams in scenario order, then paths in plan order.
        // ((stream, path), (role, pool, messages))
        type Row<'a> = ((&'a str, &'a str), (Role, &'a str, usize));
        let mut by_stream_path: Vec<Row> = Vec::new();
        for message in &self.messages {
            let key = (message.stream.as_str(), message.path.as_str());
            match by_stream_path.iter_mut().find(|(existing, _)| *existing == key) {
                Some((_, entry)) => entry.2 += 1,
                None => by_stream_path.push((key, (message.role, message.pool.as_str(), 1))),
            }
        }
        let _ = writeln!(out, "\n{:<20} {:<8} {:<16} {:<12} {:>8}", "stream", "role", "path", "pool", "messages");
        for ((stream, path), (role, pool, count)) in &by_stream_path {
            let _ = writeln!(out, "{stream:<20} {:<8} {path:<16} {pool:<12} {count:>8}", role.as_str());
        }

        let _ = writeln!(out, "\n{:<16} {:<18} {:<40}", "path", "source", "helo / relay");
        for path in &scenario.paths {
            let source = path.source_ip.map_or_else(|| "(default)".to_string(), |ip| ip.to_string());
            let via = match &path.relay {
                Some(relay) => format!("{} via smtp://{}:{}", path.helo, relay.host, relay.port),
                None => path.helo.clone(),
            };
            let _ = writeln!(out, "{:<16} {source:<18} {via:<40}", path.name);
        }

        let mut by_seed: BTreeMap<&str, usize> = BTreeMap::new();
        for message in &self.messages {
            *by_seed.entry(message.seed.as_str()).or_default() += 1;
        }
        let _ = writeln!(out, "\n{:<40} {:>8}  delivered to", "seed", "messages");
        for (seed, count) in by_seed {
            let domain = crate::scenario::address::domain_of(seed).to_ascii_lowercase();
            let route = match (scenario.delivery.routes.get(&domain), &scenario.simulator) {
                (Some(route), _) => format!("route {}:{}", route.host, route.port),
                (None, Some(_)) => "the built-in simulator".to_string(),
                (None, None) => format!("MX hosts of {domain}, port 25"),
            };
            let _ = writeln!(out, "{seed:<40} {count:>8}  {route}");
        }
        // Padding leaves trailing spaces on short last columns.
        out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
    }
}
