//! The one place that knows the byte format of every stored record and wire frame.
//!
//! Every value is an **envelope**: one leading version byte chosen by the caller (per record
//! kind), then the value serialised with bincode. Readers dispatch on [`version_of`] and
//! convert older versions forward, so a later release can read an older database (see the
//! `migration_reads_v1_into_v2` test for the pattern). The format is not self-describing:
//! adding, removing or reordering a field changes the bytes, so such a change must bump the
//! version byte and keep the old struct around for decoding.
//!
//! # bincode
//!
//! bincode is pinned at `=1.3.3`, its final release: 3.0 is a tombstone that does not compile
//! and RUSTSEC-2025-0141 marks every version unmaintained. Keeping all uses in this file makes
//! swapping the format (postcard, wincode) a one-file change plus a version bump.
//!
//! One set of options is used for every encode and decode, so limited and unlimited decodes
//! agree on the format: `bincode::DefaultOptions` spelled out explicitly — **varint** integer
//! encoding, little-endian — plus **reject trailing bytes** (a frame with garbage after the
//! value is an error, not silently accepted). Note this is *not* the format of the free
//! functions `bincode::serialize`/`deserialize` (fixint); never mix them with this module.
//!
//! # Hostile input
//!
//! Decoding reads from a byte slice: bincode checks every length prefix of strings and byte
//! buffers against the bytes actually left before allocating, and serde caps sequence
//! preallocation, so a forged length cannot make us allocate gigabytes. [`decode_limited`]
//! adds an explicit cap on the bytes a value may consume, for frames from the network: a
//! length prefix over the cap is refused before anything is read or allocated. Beware a
//! bincode 1.3.3 quirk: `Options::deserialize(&[u8])` silently drops a `with_limit`, so the
//! limited decode goes through `deserialize_from` (the `Read` path) and checks trailing bytes
//! itself.
//! Decode error texts are truncated so they never carry a whole hostile frame into a log.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// No bytes at all, not even a version byte.
    #[error("empty record: no version byte")]
    Empty,
    /// The version byte is not one this reader accepts.
    #[error("unknown record version {found} (known: {known:?})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
        /// The versions the reader accepts.
        known: &'static [u8],
    },
    /// The body does not decode as the expected type (truncated, corrupt, trailing bytes,
    /// over the size limit). The text is bincode's, truncated.
    #[error("undecodable record: {0}")]
    Decode(String),
}

/// Longest decode error text kept, in bytes.
const MAX_ERROR_TEXT: usize = 160;

/// Every byte value, so a runtime version can be reported as a `&'static [u8]`.
static ALL_VERSIONS: [u8; 256] = {
    let mut all = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u8;
        i += 1;
    }
    all
};

/// The one option set of this module (see the module doc).
fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .with_no_limit()
        .reject_trailing_bytes()
}

/// Encodes `value` in an envelope tagged `version`.
///
/// Never panics. Serialising our own derived types into a `Vec` cannot fail (no size limit, no
/// I/O); a failure means a hand-written `Serialize` impl is broken. That bug is logged and an
/// empty vector returned, which every decode rejects as [`CodecError::Empty`].
pub fn encode<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    match options().serialize_into(&mut out, value) {
        Ok(()) => out,
        Err(e) => {
            tracing::error!(version, error = %e, "codec: serialisation failed (bug)");
            Vec::new()
        }
    }
}

/// Decodes an envelope that must carry `expected_version`.
pub fn decode<T: DeserializeOwned>(expected_version: u8, bytes: &[u8]) -> Result<T, CodecError> {
    let body = body(expected_version, bytes)?;
    options().deserialize(body).map_err(decode_error)
}

/// Like [`decode`], but refuses a body (the bytes after the version byte) that would consume
/// more than `limit` bytes: for frames from the network.
pub fn decode_limited<T: DeserializeOwned>(
    expected_version: u8,
    bytes: &[u8],
    limit: u64,
) -> Result<T, CodecError> {
    let mut rest = body(expected_version, bytes)?;
    // Through `Read`, not `deserialize(&[u8])`: bincode 1.3.3 replaces any limit by
    // `Infinite` when deserialising from a slice, so only this path enforces `limit`.
    let value = options()
        .with_limit(limit)
        .deserialize_from(&mut rest)
        .map_err(decode_error)?;
    // The `Read` path does not check trailing bytes; `rest` is what was not consumed.
    if !rest.is_empty() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after the value",
            rest.len()
        )));
    }
    Ok(value)
}

/// Encodes `value` with no envelope, appended to `out`: for the parts of a packet whose
/// envelope is the packet's own (the membership packets of [`crate::cluster::members`]).
/// Never panics (see [`encode`]): a failing hand-written `Serialize` is logged and nothing
/// appended.
pub fn encode_part<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    let start = out.len();
    if let Err(e) = options().serialize_into(&mut *out, value) {
        tracing::error!(error = %e, "codec: serialisation of a packet part failed (bug)");
        out.truncate(start);
    }
}

/// Decodes one value from the front of `bytes` (no envelope; trailing bytes are the caller's)
/// consuming at most `limit` bytes; returns it and the number of bytes it took.
pub fn decode_part<T: DeserializeOwned>(
    bytes: &[u8],
    limit: u64,
) -> Result<(T, usize), CodecError> {
    let mut rest = bytes;
    // Through `Read` so that `limit` holds (see `decode_limited`); trailing bytes allowed.
    let value = options()
        .with_limit(limit)
        .allow_trailing_bytes()
        .deserialize_from(&mut rest)
        .map_err(decode_error)?;
    Ok((value, bytes.len() - rest.len()))
}

/// The version byte of an envelope, to dispatch to the right decoder or migration.
pub fn version_of(bytes: &[u8]) -> Result<u8, CodecError> {
    bytes.first().copied().ok_or(CodecError::Empty)
}

fn body(expected_version: u8, bytes: &[u8]) -> Result<&[u8], CodecError> {
    let found = version_of(bytes)?;
    if found != expected_version {
        return Err(CodecError::UnknownVersion {
            found,
            known: std::slice::from_ref(&ALL_VERSIONS[usize::from(expected_version)]),
        });
    }
    Ok(&bytes[1..])
}

fn decode_error(e: bincode::Error) -> CodecError {
    let mut text = e.to_string();
    if text.len() > MAX_ERROR_TEXT {
        let mut cut = MAX_ERROR_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    CodecError::Decode(text)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        name: String,
        expires: u64,
        tags: Vec<String>,
        etag: Option<String>,
    }

    fn record() -> Record {
        Record {
            name: "sip:alice@example.com".into(),
            expires: 1_700_000_000_123,
            tags: vec!["presence".into(), "dialog;sla".into()],
            etag: Some("a1b2".into()),
        }
    }

    #[test]
    fn parts_decode_from_the_front_and_report_what_they_took() {
        let mut bytes = Vec::new();
        encode_part(&record(), &mut bytes);
        let one = bytes.len();
        encode_part(&7u64, &mut bytes);
        let (r, used) = decode_part::<Record>(&bytes, 4096).unwrap();
        assert_eq!((r, used), (record(), one));
        assert_eq!(decode_part::<u64>(&bytes[used..], 16), Ok((7, 1)));
        // The limit holds, and truncated input is an error, not a panic.
        assert!(decode_part::<Record>(&bytes, 8).is_err());
        assert!(decode_part::<Record>(&bytes[..one - 1], 4096).is_err());
    }

    #[test]
    fn round_trip_keeps_value_and_version() {
        let bytes = encode(3, &record());
        assert_eq!(bytes[0], 3);
        assert_eq!(version_of(&bytes), Ok(3));
        assert_eq!(decode::<Record>(3, &bytes), Ok(record()));
        assert_eq!(decode_limited::<Record>(3, &bytes, 4096), Ok(record()));
        // Varint: a small integer takes one byte after the version.
        assert_eq!(encode(1, &7u64), vec![1, 7]);
    }

    #[test]
    fn wrong_version_is_refused() {
        let bytes = encode(1, &record());
        let err = decode::<Record>(2, &bytes).unwrap_err();
        assert_eq!(
            err,
            CodecError::UnknownVersion {
                found: 1,
                known: &[2]
            }
        );
        assert!(err.to_string().contains("version 1"));
    }

    #[test]
    fn empty_input_is_refused() {
        assert_eq!(version_of(&[]), Err(CodecError::Empty));
        assert_eq!(decode::<Record>(1, &[]), Err(CodecError::Empty));
        assert_eq!(decode_limited::<Record>(1, &[], 10), Err(CodecError::Empty));
    }

    #[test]
    fn truncated_input_is_refused_at_every_length() {
        let bytes = encode(1, &record());
        for cut in 1..bytes.len() {
            let result = decode::<Record>(1, &bytes[..cut]);
            assert!(
                matches!(result, Err(CodecError::Decode(_))),
                "cut at {cut}: {result:?}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(1, &record());
        bytes.push(0);
        assert!(matches!(
            decode::<Record>(1, &bytes),
            Err(CodecError::Decode(_))
        ));
        let limited = decode_limited::<Record>(1, &bytes, 4096);
        let expected = CodecError::Decode("1 trailing bytes after the value".into());
        assert_eq!(limited, Err(expected));
    }

    #[test]
    fn limited_decode_refuses_huge_length_prefix() {
        // Version 1, then a varint string length of 2^40 (marker 253 = u64 follows), 3 bytes.
        let mut frame = vec![1u8, 253];
        frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
        frame.extend_from_slice(b"abc");
        let err = decode_limited::<String>(1, &frame, 1024).unwrap_err();
        match err {
            CodecError::Decode(text) => assert!(text.contains("size limit"), "{text}"),
            other => panic!("expected a size-limit error, got {other:?}"),
        }
        // A frame within the limit decodes; the same frame over a smaller limit does not.
        let ok = encode(1, &"hello".to_string());
        assert_eq!(decode_limited::<String>(1, &ok, 6), Ok("hello".to_string()));
        assert!(decode_limited::<String>(1, &ok, 5).is_err());
        // Unlimited decode of the forged frame fails too (not enough bytes), without allocating.
        assert!(matches!(
            decode::<String>(1, &frame),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn error_text_is_truncated() {
        let long = "x".repeat(1000);
        let text = match decode_error(Box::new(bincode::ErrorKind::Custom(long))) {
            CodecError::Decode(text) => text,
            other => panic!("unexpected {other:?}"),
        };
        assert!(text.len() <= MAX_ERROR_TEXT + '…'.len_utf8());
    }

    /// How a later release reads an older database: dispatch on the version byte, decode the
    /// old shape, convert forward.
    #[test]
    fn migration_reads_v1_into_v2() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct WatcherV1 {
            uri: String,
            expires: u32,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct WatcherV2 {
            uri: String,
            expires_ms: u64,
            reason: Option<String>,
        }
        impl From<WatcherV1> for WatcherV2 {
            fn from(v1: WatcherV1) -> Self {
                WatcherV2 {
                    uri: v1.uri,
                    expires_ms: u64::from(v1.expires) * 1000,
                    reason: None,
                }
            }
        }
        const KNOWN: &[u8] = &[1, 2];
        fn read_watcher(bytes: &[u8]) -> Result<WatcherV2, CodecError> {
            match version_of(bytes)? {
                1 => decode::<WatcherV1>(1, bytes).map(WatcherV2::from),
                2 => decode::<WatcherV2>(2, bytes),
                found => Err(CodecError::UnknownVersion {
                    found,
                    known: KNOWN,
                }),
            }
        }

        let old = encode(
            1,
            &WatcherV1 {
                uri: "sip:bob@example.com".into(),
                expires: 3600,
            },
        );
        assert_eq!(version_of(&old), Ok(1));
        let expected = WatcherV2 {
            uri: "sip:bob@example.com".into(),
            expires_ms: 3_600_000,
            reason: None,
        };
        assert_eq!(read_watcher(&old), Ok(expected));
        // The old body read as the new shape is refused (it runs out of bytes), not misread.
        assert!(decode::<WatcherV2>(1, &old).is_err());
        let new = encode(
            2,
            &WatcherV2 {
                uri: "sip:c@d".into(),
                expires_ms: 5,
                reason: Some("x".into()),
            },
        );
        assert_eq!(read_watcher(&new).map(|w| w.expires_ms), Ok(5));
        assert_eq!(
            read_watcher(&[9, 0]),
            Err(CodecError::UnknownVersion {
                found: 9,
                known: KNOWN
            })
        );
    }
}
