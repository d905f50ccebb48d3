//! TCP stream framing (RFC 3261 §18.3): where does the first message in a stream buffer end?
//!
//! On streams Content-Length is mandatory, so a frame is the header section, the blank line
//! and exactly Content-Length body bytes. Bare-LF line ends and compact `l:` are accepted
//! like the parser accepts them.
//!
//! Keep-alives (RFC 5626 §3.5.1): CRLFs before a message are reported as a frame of their
//! own: `Ok(Some(k))` where the first `k` bytes are all CR/LF (the maximal run buffered so
//! far). The caller skips them, and answers a pong (`\r\n`) when the run contains a
//! double CRLF ping.
//!
//! Invariants: never panics; never returns a length beyond `buf.len()`; a frame is never
//! longer than `max` (anything that would be is `TooLarge`, headers included).

/// Why a stream cannot be framed; the connection should be closed (after a 413 for
/// [`FrameError::TooLarge`], a 400 for [`FrameError::Bad`] where a request can be identified).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header section or the whole message exceeds the limit.
    #[error("message larger than {max} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        max: usize,
    },
    /// Content-Length is missing or not a number.
    #[error("bad framing: {0}")]
    Bad(&'static str),
}

/// The length of the first frame in `buf`: `Ok(Some(n))` when complete, `Ok(None)` when more
/// bytes are needed.
pub fn frame_length(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let crlf = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if crlf > 0 {
        // Keep-alive CRLFs come as a frame of their own, never longer than `max` (a longer
        // run is returned in pieces).
        return Ok(Some(crlf.min(max.max(1))));
    }
    let Some((head_len, body_start)) = head_end(buf) else {
        return if buf.len() > max {
            Err(FrameError::TooLarge { max })
        } else {
            Ok(None)
        };
    };
    if body_start > max {
        return Err(FrameError::TooLarge { max });
    }
    let len = content_length(&buf[..head_len])?;
    let total = body_start
        .checked_add(len)
        .filter(|&t| t <= max)
        .ok_or(FrameError::TooLarge { max })?;
    Ok((buf.len() >= total).then_some(total))
}

/// `(end of the last header line, start of the body)` at the first empty line.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some((nl, nl + 2)),
            (Some(b'\r'), Some(b'\n')) => return Some((nl, nl + 3)),
            _ => i = nl + 1,
        }
    }
    None
}

/// The Content-Length (or `l`) value of a header section.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = line[colon + 1..].trim_ascii();
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::Bad("invalid Content-Length"));
            }
            return std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or(FrameError::Bad("invalid Content-Length"));
        }
    }
    Err(FrameError::Bad("missing Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_keepalive_run_is_cut_at_max() {
        // Found by fuzzing (F3): 111 CR/LF bytes with a limit of 64.
        let buf = b"\r\n".repeat(56);
        assert_eq!(frame_length(&buf[..111], 64), Ok(Some(64)));
    }

    const MSG: &[u8] = b"NOTIFY sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nl: 5\r\n\r\nhello";

    #[test]
    fn needs_more_until_headers_and_body_are_complete() {
        for cut in [0, 10, 40, MSG.len() - 6, MSG.len() - 1] {
            assert_eq!(frame_length(&MSG[..cut], 4096), Ok(None), "cut {cut}");
        }
        assert_eq!(frame_length(MSG, 4096), Ok(Some(MSG.len())));
    }

    #[test]
    fn two_messages_in_one_buffer() {
        let second = b"SIP/2.0 200 OK\nContent-Length : 0\n\n";
        let mut buf = MSG.to_vec();
        buf.extend_from_slice(second);
        let n = frame_length(&buf, 4096).unwrap().unwrap();
        assert_eq!(n, MSG.len());
        assert_eq!(frame_length(&buf[n..], 4096), Ok(Some(second.len())));
    }

    #[test]
    fn keepalive_crlfs_are_their_own_frame() {
        assert_eq!(frame_length(b"\r\n\r\nNOTIFY", 4096), Ok(Some(4)));
        assert_eq!(frame_length(b"\r\n", 4096), Ok(Some(2)));
    }

    #[test]
    fn too_large_headers_or_total() {
        let long = vec![b'a'; 100];
        assert_eq!(
            frame_length(&long, 50),
            Err(FrameError::TooLarge { max: 50 })
        );
        assert_eq!(
            frame_length(MSG, MSG.len() - 1),
            Err(FrameError::TooLarge { max: MSG.len() - 1 })
        );
        let huge = b"A sip:x SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(frame_length(huge, 4096).is_err());
    }

    #[test]
    fn missing_or_bad_content_length() {
        let no_cl = b"NOTIFY sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        assert_eq!(
            frame_length(no_cl, 4096),
            Err(FrameError::Bad("missing Content-Length"))
        );
        let bad = b"NOTIFY sip:a@b SIP/2.0\r\nContent-Length: 1x\r\n\r\n";
        assert_eq!(
            frame_length(bad, 4096),
            Err(FrameError::Bad("invalid Content-Length"))
        );
    }
}
