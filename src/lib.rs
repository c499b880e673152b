//! mailcanary: controlled send tests for email deliverability.
//!
//! A run loads a scenario, plans control and bulk messages over paths and
//! seeds, signs and sends them with full SMTP transcripts, and writes the
//! record under `runs/<id>/`. The gateway simulator (`sim`) is the embedded
//! receiver that lets the whole job run on loopback.

pub mod auth;
pub mod classify;
pub mod cli;
pub mod collect;
pub mod config;
pub mod dns;
pub mod error;
pub mod exit;
pub mod gate;
pub mod message;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sim;
pub mod smtp;
pub mod verify;
