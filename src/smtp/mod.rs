//! SMTP client side (RFC 5321, STARTTLS per RFC 3207): one attempt per
//! message, with every command and reply recorded.

pub mod client;
pub mod data;
pub mod record;
pub mod reply;
pub mod tls;
pub mod transcript;
mod wire;

pub use client::{AttemptRequest, StartTls, Timeouts, attempt};
pub use reply::{ReplyClass, ReplyError};
pub use tls::TlsPolicy;
