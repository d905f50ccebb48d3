//! Differential test: rsip 0.4.0 (the user's SIP package) as an oracle for our parser.
//!
//! presenced parses with its own `sip` layer (rsip rejects extension methods and IPv6 /
//! `tel:` Request-URIs, and does not handle compact or folded headers). On every message that
//! rsip *does* accept, both parsers must agree on what the server relies on: method,
//! Request-URI, Call-ID, CSeq, the From/To tags and the top Via branch.

use proptest::prelude::*;
use rsip::prelude::*;

fn message(
    method: &str,
    user: &str,
    call_id: &str,
    cseq: u32,
    from_tag: &str,
    branch: &str,
    to_tag: Option<&str>,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:{user}@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5090;branch={branch};rport\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsecond\r\n\
         Max-Forwards: 70\r\n\
         From: \"Bob\" <sip:bob@example.com>;tag={from_tag}\r\n\
         To: <sip:{user}@example.com>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Event: presence\r\n\
         Contact: <sip:bob@127.0.0.1:5090>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn agree(text: &str) -> Result<(), TestCaseError> {
    let Ok(theirs) = rsip::Request::try_from(text.as_bytes()) else {
        return Ok(()); // rsip refuses: nothing to compare
    };
    let ours = match presenced::sip::parse(text.as_bytes()) {
        Ok(presenced::sip::Message::Request(r)) => r,
        other => {
            return Err(TestCaseError::fail(format!(
                "rsip accepts, we do not: {other:?}"
            )))
        }
    };
    prop_assert_eq!(ours.method.as_str(), theirs.method().to_string());
    prop_assert_eq!(&ours.uri, &theirs.uri().to_string());
    prop_assert_eq!(
        &ours.call_id,
        &theirs.call_id_header().unwrap().value().to_string()
    );
    prop_assert_eq!(
        ours.cseq.seq,
        theirs.cseq_header().unwrap().typed().unwrap().seq
    );
    let from_tag = theirs
        .from_header()
        .unwrap()
        .tag()
        .unwrap()
        .map(|t| t.to_string());
    prop_assert_eq!(ours.from.tag.clone(), from_tag);
    let to_tag = theirs
        .to_header()
        .unwrap()
        .tag()
        .unwrap()
        .map(|t| t.to_string());
    prop_assert_eq!(ours.to.tag.clone(), to_tag);
    let branch = theirs
        .via_header()
        .unwrap()
        .typed()
        .unwrap()
        .branch()
        .map(|b| b.to_string());
    prop_assert_eq!(ours.vias[0].branch.clone(), branch);
    prop_assert_eq!(ours.vias.len(), 2);
    Ok(())
}

#[test]
fn both_parsers_agree_on_a_typical_subscribe() {
    let text = message(
        "SUBSCRIBE",
        "alice",
        "abc@host",
        7,
        "ft1",
        "z9hG4bK776",
        Some("tt9"),
    );
    // Not vacuous: rsip must accept this one.
    assert!(rsip::Request::try_from(text.as_bytes()).is_ok());
    agree(&text).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn both_parsers_agree_where_rsip_accepts(
        method in prop::sample::select(vec!["SUBSCRIBE", "PUBLISH", "OPTIONS", "NOTIFY"]),
        user in "[a-z][a-z0-9._-]{0,12}",
        call_id in "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,20}(@[a-z0-9.]{1,10})?",
        cseq in 1u32..2_000_000_000,
        from_tag in "[A-Za-z0-9]{1,16}",
        branch in "z9hG4bK[A-Za-z0-9.-]{1,20}",
        to_tag in prop::option::of("[A-Za-z0-9-]{1,16}"),
    ) {
        agree(&message(method, &user, &call_id, cseq, &from_tag, &branch, to_tag.as_deref()))?;
    }
}
