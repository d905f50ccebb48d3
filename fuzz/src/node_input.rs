//! The `node` target's plumbing: the input record layout ([`records`] / [`encode`]), the
//! network-isolation check, `$TAG`/`$ETAG` substitution, and the process checks (VmRSS).
//!
//! Invariant: [`records`] never reads past the input and returns at most [`MAX_RECORDS`];
//! [`encode`] is its inverse for payloads up to 65535 bytes.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Liveness and memory are checked every this many inputs (and after the first).
pub const CHECK_EVERY: u64 = 256;
/// VmRSS above which the target aborts (1.5 GB).
pub const RSS_LIMIT_KB: u64 = 1_500_000;
/// Records read from one input; the rest is ignored.
pub const MAX_RECORDS: usize = 16;

/// One datagram (or TCP write) of an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Client index, 0..8.
    pub client: usize,
    /// Sent over the TCP connection instead of the client's UDP socket.
    pub tcp: bool,
    /// The bytes (before `$TAG` / `$ETAG` substitution).
    pub payload: &'a [u8],
}

/// Splits an input into (answer mask, error mask, records); a short last length is cut to
/// what remains.
pub fn records(data: &[u8]) -> (u8, u8, Vec<Record<'_>>) {
    let answer = data.first().copied().unwrap_or(0);
    let error = data.get(1).copied().unwrap_or(0);
    let mut rest = data.get(2..).unwrap_or(&[]);
    let mut out = Vec::new();
    while out.len() < MAX_RECORDS && rest.len() >= 3 {
        let flags = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        out.push(Record {
            client: usize::from(flags & 7),
            tcp: flags & 0x80 != 0,
            payload: &rest[3..3 + len],
        });
        rest = &rest[3 + len..];
    }
    (answer, error, out)
}

/// Encodes an input (the inverse of [`records`]); `flags` as in the layout.
pub fn encode(answer: u8, error: u8, recs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = vec![answer, error];
    for (flags, payload) in recs {
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        out.push(*flags);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&payload[..usize::from(len)]);
    }
    out
}

/// Whether this process can reach nothing but loopback (`/proc/net/dev` lists only `lo`).
pub fn isolated() -> bool {
    let Ok(dev) = std::fs::read_to_string("/proc/net/dev") else {
        return false;
    };
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .all(|name| name.trim() == "lo")
}

/// Aborts when VmRSS is over [`RSS_LIMIT_KB`]; logs it every 16 checks.
pub(crate) fn check_rss(inputs: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    if inputs.is_multiple_of(CHECK_EVERY * 16) {
        eprintln!("node target: {inputs} inputs, VmRSS {} MB", kb / 1024);
    }
    if kb > RSS_LIMIT_KB {
        crate::node::abort(&format!(
            "VmRSS {kb} kB over the limit after {inputs} inputs"
        ));
    }
}

/// Writes all of `data` on a non-blocking stream, waiting briefly when the buffer is full.
pub(crate) fn write_all(s: &mut TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    let end = Instant::now() + Duration::from_millis(100);
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A Via value without its `received` and `rport` parameters (which the node rewrites in
/// the top Via of a response) and with CR/LF as spaces (as the response builder writes a
/// value that F5 let a folded bare CR into), to match a response to its request.
pub(crate) fn via_key(via: &str) -> String {
    via.replace(['\r', '\n'], " ")
        .trim()
        .split(';')
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("").trim();
            !name.eq_ignore_ascii_case("received") && !name.eq_ignore_ascii_case("rport")
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The value of the first Via (or `v`) header of a message, read as text.
pub(crate) fn first_via(msg: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    text.split('\n')
        .skip(1)
        .map(|l| l.trim_end_matches('\r'))
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v"))
                .then(|| value.trim().to_string())
        })
}

/// `hay` with every `needle` replaced by `with`.
pub(crate) fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_last_record_is_cut_to_what_remains() {
        let (a, e, recs) = records(&[1, 2, 0x83, 0, 9, b'x', b'y', 7]);
        assert_eq!((a, e), (1, 2));
        assert_eq!(recs.len(), 1);
        assert_eq!(
            (recs[0].client, recs[0].tcp, recs[0].payload),
            (3, true, &b"xy\x07"[..])
        );
        let many = encode(0, 0, &vec![(0u8, &b"a"[..]); MAX_RECORDS + 3]);
        assert_eq!(records(&many).2.len(), MAX_RECORDS);
    }

    #[test]
    fn the_stamped_top_via_matches_the_one_sent() {
        let sent = "SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bKd21;rport";
        let back = "SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bKd21;rport=5072;received=127.0.0.1";
        assert_eq!(via_key(sent), via_key(back));
        assert_ne!(
            via_key(sent),
            via_key("SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bKd22")
        );
        assert_eq!(
            via_key("SIP/2.0/UD<x>;t: \r2<y>"),
            via_key("SIP/2.0/UD<x>;t:  2<y>")
        );
        let msg = b"SIP/2.0 400 Missing To\r\nFrom: <sip:a@x>\r\nv: SIP/2.0/UDP h;branch=b\r\nVia: x\r\n\r\nVia: body";
        assert_eq!(first_via(msg).as_deref(), Some("SIP/2.0/UDP h;branch=b"));
        assert_eq!(first_via(b"SIP/2.0 400 X\r\n\r\nVia: in the body"), None);
    }

    #[test]
    fn placeholders_are_replaced_everywhere() {
        assert_eq!(replace(b"a$TAGb$TAG", b"$TAG", b"t1"), b"at1bt1");
        assert_eq!(replace(b"$ETA", b"$ETAG", b"e"), b"$ETA");
    }
}
