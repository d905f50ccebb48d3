//! Robustness: random bytes and mutated valid messages never make `parse` or
//! `frame_length` panic, and their results stay within the input.

use proptest::prelude::*;

use super::*;

const SEEDS: &[&str] = &[
    "SUBSCRIBE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;rport;branch=z9hG4bK-c, SIP/2.0/TCP [::1]:5060;branch=z9hG4bKq\r\nRecord-Route: <sip:p1;lr>, \"x,y\" <sip:p2;lr>\r\nFrom: \"A\" <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:a@10.0.0.5>\r\nEvent: presence;id=2\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n",
    "PUBLISH sip:a@x SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1\nf: <sip:a@x>;tag=1\nt : <sip:a@x>\ni: c\nCSeq: 1 PUBLISH\no: presence\nc: application/pidf+xml\nSIP-If-Match: e1\nl: 5\n\nhello",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKn\r\nFrom: <sip:b@x>;tag=2\r\nTo: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 3 NOTIFY\r\nContent-Length: 0\r\n\r\n",
];

const NOISE: &[u8] = b":;<>\"\r\n%@[]=, \t\0\\/SIP2.0\xff";

fn mutate(seed: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut buf = seed.to_vec();
    for &(op, pos, val) in ops {
        if buf.is_empty() {
            buf.push(val);
            continue;
        }
        let at = pos % buf.len();
        match op % 5 {
            0 => buf[at] = NOISE[val as usize % NOISE.len()],
            1 => {
                buf.remove(at);
            }
            2 => buf.insert(at, NOISE[val as usize % NOISE.len()]),
            3 => buf.truncate(at),
            _ => {
                let end = (at + val as usize % 32).min(buf.len());
                let chunk = buf[at..end].to_vec();
                buf.splice(at..at, chunk);
            }
        }
    }
    buf
}

fn check(buf: &[u8]) {
    match parse(buf) {
        Ok(Message::Request(r)) => {
            assert!(r.body.len() <= buf.len());
            assert!(!r.vias.is_empty() && !r.call_id.is_empty());
        }
        Ok(Message::Response(r)) => assert!((100..=699).contains(&r.status)),
        Err(ParseError::BadRequest { reason, .. }) => assert!(reason.len() < 40, "{reason}"),
        Err(_) => {}
    }
    for max in [64, 4096] {
        if let Ok(Some(n)) = frame_length(buf, max) {
            assert!(n > 0 && n <= buf.len() && n <= max);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&buf);
    }

    #[test]
    fn mutated_messages_never_panic(
        seed in 0..SEEDS.len(),
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    ) {
        check(&mutate(SEEDS[seed].as_bytes(), &ops));
    }
}

#[test]
fn seeds_are_valid() {
    for s in SEEDS {
        assert!(parse(s.as_bytes()).is_ok(), "{s}");
    }
}
