//! The connection under an SMTP session: a TCP stream that STARTTLS may
//! upgrade, and bounded reads of reply lines, so that a hostile server cannot
//! make the client buffer without limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::record::Reply;
use super::reply::ReplyError;

/// Maximum length of one reply line, CRLF excluded. RFC 5321 section
/// 4.5.3.1.5 sets 512 octets, but gateways send longer lines.
pub const MAX_LINE_LEN: usize = 4096;

/// Maximum number of lines in one reply.
pub const MAX_REPLY_LINES: usize = 1000;

/// A TCP connection, in the clear or inside TLS after STARTTLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The reason no reply could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The server closed the connection before the first byte of the reply.
    Closed,
    /// The server closed the connection inside the reply; the bytes read so
    /// far are kept to quote them.
    Truncated(Vec<u8>),
    /// A line ran past [`MAX_LINE_LEN`]; its first bytes are kept.
    LineTooLong(Vec<u8>),
    TooManyLines,
    /// The lines do not form a reply.
    Invalid(ReplyError),
    Io(io::Error),
}

/// Reads one reply: lines until one without `-` after its code, each bounded
/// by [`MAX_LINE_LEN`], at most [`MAX_REPLY_LINES`] of them.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, ReadError> {
    let mut lines: Vec<String> = Vec::new();

    loop {
        let line = match read_line(reader).await {
            Ok(Some(line)) => line,
            Ok(None) if lines.is_empty() => return Err(ReadError::Closed),
            Ok(None) => return Err(ReadError::Truncated(join_lines(&lines))),
            Err(ReadError::Truncated(partial)) => {
                let mut read = join_lines(&lines);
                read.extend_from_slice(&partial);
                return Err(ReadError::Truncated(read));
            }
            Err(error) => return Err(error),
        };

        // NOTE: bytes that are not UTF-8 are replaced with U+FFFD, so such a
        // line is stored as text close to, but not exactly, what was sent.
        let line = String::from_utf8_lossy(&line).into_owned();
        tracing::trace!(target: "mailcanary::smtp::wire", "S: {line}");
        let continues = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line);

        if !continues {
            break;
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(ReadError::TooManyLines);
        }
    }

    Reply::parse_lines(&lines).map_err(ReadError::Invalid)
}

/// Reads one line without its line ending (CRLF, or a bare LF, which some
/// servers send). Returns `None` when the connection closed before the line.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = Vec::new();

    loop {
        let buffer = reader.fill_buf().await.map_err(ReadError::Io)?;
        if buffer.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            return Err(ReadError::Truncated(line));
        }

        match buffer.iter().position(|&byte| byte == b'\n') {
            Some(end) => {
                if line.len() + end > MAX_LINE_LEN + 1 {
                    line.extend_from_slice(&buffer[..end.min(MAX_LINE_LEN)]);
                    line.truncate(MAX_LINE_LEN);
                    return Err(ReadError::LineTooLong(line));
                }
                line.extend_from_slice(&buffer[..end]);
                reader.consume(end + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > MAX_LINE_LEN {
                    return Err(ReadError::LineTooLong(line));
                }
                return Ok(Some(line));
            }
            None => {
                let available = buffer.len();
                if line.len() + available > MAX_LINE_LEN + 1 {
                    line.extend_from_slice(buffer);
                    line.truncate(MAX_LINE_LEN);
                    return Err(ReadError::LineTooLong(line));
                }
                line.extend_from_slice(buffer);
                reader.consume(available);
            }
        }
    }
}

fn join_lines(lines: &[String]) -> Vec<u8> {
    let mut joined = Vec::new();
    for line in lines {
        joined.extend_from_slice(line.as_bytes());
        joined.extend_from_slice(b"\r\n");
    }
    joined
}

/// Quotes bytes read from the server for an error message: printable ASCII
/// as is, everything else escaped, cut after 200 bytes.
pub fn quote(bytes: &[u8]) -> String {
    const MAX_QUOTED: usize = 200;
    let shown = &bytes[..bytes.len().min(MAX_QUOTED)];
    let mut quoted = format!("\"{}\"", shown.escape_ascii());
    if bytes.len() > MAX_QUOTED {
        quoted.push_str(&format!(" (first {MAX_QUOTED} of {} bytes)", bytes.len()));
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn read(input: &[u8]) -> Result<Reply, ReadError> {
        let mut reader = BufReader::new(input);
        read_reply(&mut reader).await
    }

    #[tokio::test]
    async fn reads_multi_line_reply() {
        let reply = read(b"250-one\r\n250 two\r\n").await.unwrap();
        assert_eq!(reply.lines, ["250-one", "250 two"]);
    }

    #[tokio::test]
    async fn accepts_bare_lf() {
        let reply = read(b"220 ready\n").await.unwrap();
        assert_eq!(reply.lines, ["220 ready"]);
    }

    #[tokio::test]
    async fn stops_at_last_line() {
        let mut reader = BufReader::new(&b"250 first\r\n250 second\r\n"[..]);
        let reply = read_reply(&mut reader).await.unwrap();
        assert_eq!(reply.lines, ["250 first"]);
    }

    #[tokio::test]
    async fn closed_before_reply() {
        assert!(matches!(read(b"").await, Err(ReadError::Closed)));
    }

    #[tokio::test]
    async fn closed_inside_reply() {
        let error = read(b"250-one\r\n250-tw").await.unwrap_err();
        match error {
            ReadError::Truncated(bytes) => assert_eq!(bytes, b"250-one\r\n250-tw"),
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn long_line_rejected() {
        let mut input = b"250 ".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN * 3));
        input.extend_from_slice(b"\r\n");
        match read(&input).await.unwrap_err() {
            ReadError::LineTooLong(start) => assert_eq!(start.len(), MAX_LINE_LEN),
            other => panic!("expected LineTooLong, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn line_at_limit_accepted() {
        let mut input = b"250 ".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN - 4));
        input.extend_from_slice(b"\r\n");
        let reply = read(&input).await.unwrap();
        assert_eq!(reply.lines[0].len(), MAX_LINE_LEN);
    }

    #[tokio::test]
    async fn endless_reply_rejected() {
        let input = b"250-x\r\n".repeat(MAX_REPLY_LINES + 5);
        assert!(matches!(read(&input).await, Err(ReadError::TooManyLines)));
    }

    #[tokio::test]
    async fn non_reply_is_invalid() {
        assert!(matches!(read(b"HELLO\r\n").await, Err(ReadError::Invalid(_))));
    }

    #[test]
    fn quote_escapes_control_bytes() {
        assert_eq!(quote(b"HEL\x00LO\r\n"), "\"HEL\\x00LO\\r\\n\"");
    }
}
