//! Messages a run sends: placeholders, tracking tokens, control and bulk
//! composition (RFC 5322), and DKIM signing (RFC 6376).

mod compose;
mod dkim;
mod template;
mod token;

pub use compose::{ComposeContext, ComposeError, compose_bulk, compose_control};
pub use dkim::{DEFAULT_SIGNED_HEADERS, DkimKey, DkimSigner, KeyError, KeyType, SignError, sign};
pub use template::{PLACEHOLDERS, check_template};
pub use token::{TOKEN_HEADER, TrackingToken};

#[cfg(test)]
mod tests;
