//! The `message-summary` event package (RFC 3842, message waiting indication): Kamailio's
//! presence_mwi.
//!
//! Accepts `application/simple-message-summary`; default Expires 3600. The body check is as
//! tolerant as presence_mwi's: only the first non-empty line is judged and must be the
//! status line `Messages-Waiting: yes|no` (name and value case-insensitive, optional white
//! space around the colon, LF or CRLF line ends); the rest (`Message-Account:`, summary lines
//! such as `Voice-Message: 2/8 (0/2)`, optional headers) is not checked. Composition: the
//! newest publication wins — the first of the documents, returned byte for byte.
//!
//! Invariant: [`MwiPackage::aggregate`] never alters a body; it only picks one.

use bytes::Bytes;

use crate::ids::PresentityUri;
use crate::presence::package::EventPackage;

/// The `message-summary` package (RFC 3842).
#[derive(Clone, Copy, Debug, Default)]
pub struct MwiPackage;

impl EventPackage for MwiPackage {
    fn name(&self) -> &str {
        "message-summary"
    }

    fn content_types(&self) -> &[&str] {
        &["application/simple-message-summary"]
    }

    fn default_expires(&self) -> u32 {
        3600
    }

    fn validate_publish(&self, body: &[u8]) -> Result<(), String> {
        validate_message_summary(body)
    }

    /// The first (highest-precedence, i.e. newest) document as-is; `None` when there is none.
    fn aggregate(&self, _presentity: &PresentityUri, docs: &[&[u8]]) -> Option<Bytes> {
        docs.first().map(|d| Bytes::copy_from_slice(d))
    }
}

/// Checks the status line of a message-summary body (RFC 3842 §5.2); `Err` is a short reason.
pub fn validate_message_summary(body: &[u8]) -> Result<(), String> {
    let line = body
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .find(|l| !l.is_empty())
        .ok_or("empty message-summary body")?;
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or("first line is not Messages-Waiting")?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if !name.trim_ascii().eq_ignore_ascii_case(b"Messages-Waiting") {
        return Err("first line is not Messages-Waiting".to_string());
    }
    let value = value.trim_ascii();
    if value.eq_ignore_ascii_case(b"yes") || value.eq_ignore_ascii_case(b"no") {
        Ok(())
    } else {
        Err("Messages-Waiting is neither yes nor no".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UriMatch;

    #[test]
    fn accepts_status_line_and_ignores_the_rest() {
        let cases: &[&[u8]] = &[
            b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/8 (0/2)\r\n",
            b"Messages-Waiting: no\r\n",
            b"messages-waiting:YES",
            b"\r\n  \nMessages-Waiting :\tno \nanything at all: here\n\xff\xfe",
            b"Messages-Waiting: yes\r\nVoice-Message: garbage that presence_mwi never reads\r\n",
        ];
        for body in cases {
            assert_eq!(
                validate_message_summary(body),
                Ok(()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn rejects_a_bad_status_line() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b" \r\n\r\n", "empty"),
            (
                b"Voice-Message: 2/8\r\nMessages-Waiting: yes\r\n",
                "not Messages-Waiting",
            ),
            (b"Messages-Waiting yes\r\n", "not Messages-Waiting"),
            (b"Messages-Waitin: yes\r\n", "not Messages-Waiting"),
            (b"Messages-Waiting: maybe\r\n", "neither yes nor no"),
            (b"Messages-Waiting:\r\n", "neither yes nor no"),
            (b"Messages-Waiting: yes please\r\n", "neither yes nor no"),
        ];
        for (body, want) in cases {
            let got = MwiPackage
                .validate_publish(body)
                .expect_err(&String::from_utf8_lossy(body));
            assert!(
                got.contains(want),
                "{:?}: got {got:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn metadata_and_newest_publication_wins() {
        let p = MwiPackage;
        assert_eq!(
            (p.name(), p.content_types(), p.default_expires()),
            (
                "message-summary",
                &["application/simple-message-summary"][..],
                3600
            )
        );
        assert!(!p.etag_not_new() && !p.req_auth());
        let uri = PresentityUri::parse("sip:alice@example.com", UriMatch::CaseSensitive).unwrap();
        assert_eq!(p.aggregate(&uri, &[]), None);
        let newest: &[u8] = b"Messages-Waiting: yes\r\nVoice-Message: 3/8\r\n";
        let older: &[u8] = b"Messages-Waiting: no\r\n";
        assert_eq!(p.aggregate(&uri, &[newest, older]).as_deref(), Some(newest));
        assert_eq!(p.aggregate(&uri, &[older, newest]).as_deref(), Some(older));
        let body =
            crate::presence::package::Body::new("application/simple-message-summary", newest);
        assert_eq!(p.aux_body(&body, 3), None);
    }
}
