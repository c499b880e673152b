//! SMTP client side (RFC 5321, STARTTLS per RFC 3207): one attempt per
//! message, with every command and reply recorded.

pub mod record;
