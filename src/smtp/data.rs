//! The message content as sent after DATA (RFC 5321 section 4.5.2): lines end
//! in CRLF, a line that starts with `.` gets one more, and a line holding
//! only `.` ends the data.

/// The line that ends the message content.
pub const END_OF_DATA: &[u8] = b".\r\n";

/// Encodes message bytes for the DATA phase: bare LF and bare CR become CRLF,
/// each line that starts with `.` is dot-stuffed, and the content ends with
/// CRLF. The end-of-data line itself is not included.
pub fn encode(message: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(message.len() + message.len() / 64 + 2);
    let mut at_line_start = true;
    let mut index = 0;

    while index < message.len() {
        let byte = message[index];
        if at_line_start && byte == b'.' {
            encoded.push(b'.');
        }

        match byte {
            b'\r' => {
                // CRLF stays one line ending, and a CR alone becomes one too.
                if message.get(index + 1) == Some(&b'\n') {
                    index += 1;
                }
                encoded.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            b'\n' => {
                encoded.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                encoded.push(byte);
                at_line_start = false;
            }
        }
        index += 1;
    }

    if !at_line_start {
        encoded.extend_from_slice(b"\r\n");
    }
    encoded
}

/// Tells whether the message has bytes above 127, which needs BODY=8BITMIME
/// (RFC 6152) when the server offers it.
pub fn has_eight_bit(message: &[u8]) -> bool {
    !message.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_kept() {
        assert_eq!(encode(b"a\r\nb\r\n"), b"a\r\nb\r\n");
    }

    #[test]
    fn bare_lf_becomes_crlf() {
        assert_eq!(encode(b"a\nb\n"), b"a\r\nb\r\n");
    }

    #[test]
    fn bare_cr_becomes_crlf() {
        assert_eq!(encode(b"a\rb\r\n"), b"a\r\nb\r\n");
    }

    #[test]
    fn blank_lines_kept() {
        assert_eq!(encode(b"a\n\n\r\n\rb"), b"a\r\n\r\n\r\n\r\nb\r\n");
    }

    #[test]
    fn missing_final_line_ending_added() {
        assert_eq!(encode(b"Subject: x\r\n\r\nbody"), b"Subject: x\r\n\r\nbody\r\n");
    }

    #[test]
    fn leading_dot_stuffed() {
        assert_eq!(encode(b".hidden\r\n"), b"..hidden\r\n");
    }

    #[test]
    fn lone_dot_line_stuffed() {
        assert_eq!(encode(b"a\n.\nb\n"), b"a\r\n..\r\nb\r\n");
    }

    #[test]
    fn dot_after_bare_cr_stuffed() {
        assert_eq!(encode(b"a\r.b"), b"a\r\n..b\r\n");
    }

    #[test]
    fn inner_dot_untouched() {
        assert_eq!(encode(b"a.b\r\n x.\r\n"), b"a.b\r\n x.\r\n");
    }

    #[test]
    fn empty_message_stays_empty() {
        assert_eq!(encode(b""), b"");
    }

    #[test]
    fn eight_bit_detected() {
        assert!(has_eight_bit("Grüße".as_bytes()));
        assert!(!has_eight_bit(b"plain"));
    }
}
