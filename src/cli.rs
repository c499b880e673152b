//! Command-line parsing and dispatch. Each subcommand returns an
//! [`ExitStatus`] or an [`Error`]; [`main`] turns both into the exit code.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::Error;
use crate::exit::ExitStatus;
use crate::plan::Plan;
use crate::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(
    name = "mailcanary",
    version,
    about = "Controlled send tests for email deliverability: control versus bulk through chosen IPs and pools, with full SMTP transcripts",
    after_help = "Exit codes: 0 healthy, 1 the run could not be completed, 2 invalid usage or scenario (nothing sent), 3 warning, 4 critical."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// More log detail on stderr: -v for debug, -vv for trace (SMTP wire lines, secrets masked).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a scenario's control and bulk messages and record every attempt.
    Run(RunArgs),
    /// Validate a scenario and print its plan without sending anything.
    Check(CheckArgs),
    /// Re-evaluate a saved run's checkpoint without sending anything.
    Gate(GateArgs),
    /// Print the evidence packet of a saved run as Markdown, JSON or JUnit XML.
    Report(ReportArgs),
    /// Parse and check one saved message (.eml): authentication headers, Received chain, own checks.
    Inspect(InspectArgs),
    /// Explain one SMTP reply or MTA log line: provider, reason, the IP it names, what to do.
    Explain(ExplainArgs),
    /// Run the gateway simulator as a standalone SMTP receiver.
    Sim(SimArgs),
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The reply as the server sent it, or as a log or bounce carried it, since
    /// Postfix, Exim and other MTA log lines are unwrapped. `-` reads it from stdin.
    reply: String,

    /// The MX host that sent the reply, which reveals the provider.
    #[arg(long, value_name = "HOST")]
    mx: Option<String>,

    /// Print JSON: outcome, code, enhanced, provider, reason, ip, lookup_url, advice.
    #[arg(long)]
    json: bool,

    /// Your own classification rules (TOML), tried before the built-in ones.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The message file (.eml, as saved from a mailbox).
    file: PathBuf,

    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,

    /// Take DNS settings ([dns]), the envelope sender and the path's source
    /// IP and HELO from this scenario.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,

    /// The path of the scenario the message was sent on (with --scenario).
    #[arg(long, value_name = "NAME", requires = "scenario")]
    path: Option<String>,

    /// The receiving gateway's authserv-id, to pick its Authentication-Results header.
    #[arg(long, value_name = "ID")]
    authserv_id: Option<String>,

    /// Only parse headers; run no DNS-based check of our own.
    #[arg(long)]
    no_dns: bool,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The run directory (the one holding run.json).
    run_dir: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    format: ReportFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Md,
    Json,
    Junit,
}

#[derive(Debug, Args)]
struct GateArgs {
    /// The run directory (the one holding run.json).
    run_dir: PathBuf,

    /// Apply this scenario's [gate] thresholds instead of the recorded ones.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The scenario file (TOML).
    scenario: PathBuf,

    /// Directory in which the run directory is created.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    runs_dir: PathBuf,

    /// Never draw the progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,

    /// Skip the DNS and identity checks that run before sending.
    #[arg(long)]
    no_preflight: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The scenario file (TOML).
    scenario: PathBuf,

    /// Also run the DNS and identity checks of every path (PTR, HELO, SPF,
    /// DKIM, DMARC, seed MX, DNSBL) through the scenario's [dns] settings.
    /// Exits 4 when a check fails, 3 when one warns.
    #[arg(long)]
    dns: bool,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Policy file: a [simulator] table, optionally with a [dns] table.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,

    /// Address to listen on, overriding the policy's `listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Maildir root that accepted messages are delivered into.
    #[arg(long, value_name = "DIR", default_value = "sim-maildir")]
    maildir: PathBuf,
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap exits 0 for --help and --version and 2 for usage errors,
            // which is the table's code for invalid usage.
            let _ = error.print();
            return error.exit_code();
        }
    };
    init_logging(&cli);

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitStatus::RunFailed.code();
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    match result {
        Ok(status) => status.code(),
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_status().code()
        }
    }
}

async fn dispatch(command: Command) -> Result<ExitStatus, Error> {
    match command {
        Command::Check(args) => {
            let scenario = Scenario::load(&args.scenario)?;
            let plan = Plan::build(&scenario)?;
            // A scenario may be checked on another host than the one that
            // sends it, so an address missing here is a warning; run refuses.
            if let Err(problems) = scenario.check_source_addresses() {
                for problem in problems.lines() {
                    tracing::warn!("{problem}; run would refuse to send from here");
                }
            }
            emit(&plan.render(&scenario));
            if !args.dns {
                emit("\nscenario is valid; nothing was sent\n");
                return Ok(ExitStatus::Healthy);
            }
            let dns = crate::dns::Dns::start(&scenario.dns).await?;
            let preflight = crate::preflight::run(&scenario, &dns).await;
            emit(&format!("\npreflight:\n{}", preflight.render()));
            let worst = preflight.findings.iter().map(|finding| finding.status).max();
            let status = match worst {
                Some(crate::preflight::Status::Fail) => ExitStatus::Critical,
                Some(crate::preflight::Status::Warn) => ExitStatus::Warning,
                _ => ExitStatus::Healthy,
            };
            emit(&format!(
                "\nscenario is valid; {} of the preflight checks failed; nothing was sent\n",
                preflight.failures().count()
            ));
            Ok(status)
        }
        Command::Run(args) => {
            let scenario = Scenario::load(&args.scenario)?;
            Plan::build(&scenario)?;
            scenario.check_source_addresses().map_err(Error::Usage)?;
            let options = crate::run::RunOptions {
                runs_dir: args.runs_dir,
                progress: !args.no_progress && std::io::stderr().is_terminal(),
                preflight: !args.no_preflight,
            };
            let result = crate::run::run(scenario, &options).await?;
            emit(&crate::run::summary::render(&result.record, &result.directory));
            let verdict = result.record.verdict.as_ref().expect("run evaluates every completed run");
            emit(&format!("\n{}", crate::gate::render(verdict)));
            Ok(verdict.exit_status())
        }
        Command::Gate(args) => {
            let record = crate::run::load_record(&args.run_dir)?;
            let gate = match &args.scenario {
                Some(file) => Scenario::load(file)?.gate,
                None => match &record.verdict {
                    Some(verdict) => verdict.gate.clone(),
                    None => crate::scenario::Gate::default(),
                },
            };
            let verdict = crate::gate::evaluate(&record, &gate);
            emit(&format!("run {} ({})\n{}", record.run_id, record.scenario.name, crate::gate::render(&verdict)));
            Ok(verdict.exit_status())
        }
        Command::Report(args) => {
            let record = crate::run::load_record(&args.run_dir)?;
            let gate = record.verdict.as_ref().map(|verdict| verdict.gate.clone()).unwrap_or_default();
            let verdict = crate::gate::evaluate(&record, &gate);
            let text = match args.format {
                ReportFormat::Md => crate::report::markdown(&record, &verdict),
                ReportFormat::Json => crate::report::json(&record, &verdict),
                ReportFormat::Junit => crate::report::junit(&record, &verdict),
            };
            emit(&text);
            Ok(ExitStatus::Healthy)
        }
        Command::Inspect(args) => inspect(args).await,
        Command::Explain(args) => {
            let input = if args.reply == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|error| Error::Usage(format!("cannot read the reply from stdin: {error}")))?;
                text
            } else {
                args.reply.clone()
            };
            if input.trim().is_empty() {
                return Err(Error::Usage(
                    "the reply is empty; paste the server's reply, such as \"421 4.7.0 ...\"".into(),
                ));
            }
            let user_rules = match &args.rules {
                Some(file) => Some(crate::classify::load_user_rules(file)?),
                None => None,
            };
            let rules = user_rules.as_ref().unwrap_or_else(|| crate::classify::Rules::builtin());
            let (unwrapped, classification) = crate::classify::explain(&input, args.mx.as_deref(), rules);
            if args.json {
                emit(&(crate::classify::explain_json(&classification) + "\n"));
            } else {
                emit(&crate::classify::explain_text(&classification, &unwrapped));
            }
            Ok(ExitStatus::Healthy)
        }
        Command::Sim(args) => {
            crate::sim::run_standalone(&args.policy, args.listen, &args.maildir).await?;
            Ok(ExitStatus::Healthy)
        }
    }
}

/// Logs go to stderr. `RUST_LOG` overrides the level chosen by -v and -q.
fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let default = format!("warn,mailcanary={level}");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

async fn inspect(args: InspectArgs) -> Result<ExitStatus, Error> {
    let message = std::fs::read(&args.file)
        .map_err(|error| Error::Usage(format!("cannot read {}: {error}", args.file.display())))?;
    let scenario = match &args.scenario {
        Some(file) => Some(Scenario::load(file)?),
        None => None,
    };
    let path = match (&scenario, &args.path) {
        (Some(scenario), Some(name)) => Some(scenario.path_by_name(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = scenario.paths.iter().map(|path| path.name.as_str()).collect();
            Error::Usage(format!(
                "path {name:?} is not in {}; its paths are: {}",
                scenario.file.display(),
                known.join(", ")
            ))
        })?),
        _ => None,
    };
    let mail_from = scenario.as_ref().map(|scenario| scenario.sender.mail_from.clone()).unwrap_or_default();
    let envelope = crate::verify::Envelope {
        client_ip: path.as_ref().and_then(|path| path.source_ip),
        helo: path.as_ref().map_or("", |path| path.helo.as_str()),
        mail_from: &mail_from,
    };
    let mut trusted = crate::auth::select::TrustedIds::default();
    if let Some(id) = &args.authserv_id {
        trusted.authserv_ids.push(id.clone());
    }

    let dns = if args.no_dns {
        None
    } else {
        let settings = scenario.as_ref().map(|scenario| scenario.dns.clone()).unwrap_or_default();
        Some(crate::dns::Dns::start(&settings).await?)
    };
    let authenticator = dns.as_ref().map(|dns| dns.authenticator());
    let inspection = crate::verify::inspect::inspect(&message, authenticator.as_deref(), &envelope, &trusted).await;
    if args.json {
        emit(&(serde_json::to_string_pretty(&inspection).expect("the inspection serializes") + "\n"));
    } else {
        emit(&crate::verify::inspect::render(&inspection));
    }
    Ok(ExitStatus::Healthy)
}

/// Writes product output to stdout. A reader that stops early (`| head`)
/// closes the pipe, which is not an error of the command.
fn emit(text: &str) {
    use std::io::Write;

    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        tracing::error!(%error, "cannot write to stdout");
    }
}
