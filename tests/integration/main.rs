//! The integration suite in one test binary, so the crate is linked once.

mod auth_proofpoint;
mod auth_results;
mod classify_logs;
mod classify_replies;
mod imap_collect;
mod preflight;
mod run_demo;
mod scenario_check;
mod sim_server;
mod smtp_client;
mod smtp_replies;
mod stack_e2e;
