//! Wire framing: every frame round-trips through `encode_frame` and `FrameDecoder` however
//! the stream is chunked; oversized and garbage input is refused without panicking.

use proptest::prelude::*;

use super::*;
use crate::cluster::merge::{OwnedDialog, SubRecord};
use crate::cluster::sync::SyncMsg;
use crate::cluster::wire::{
    compatible, decode_frame, encode_frame, Frame, FrameDecoder, FrameError, Hello,
    DEFAULT_MAX_FRAME, PROTOCOL,
};
use crate::ids::DialogId;
use crate::presence::subscription::{DialogState, SubStatus};

fn dialog() -> DialogState {
    DialogState {
        id: DialogId {
            call_id: "c1@host".into(),
            remote_tag: "rt".into(),
            local_tag: "lt".into(),
        },
        presentity: key("alice", "L").uri,
        event: EventKey::new("presence"),
        event_id: Some("7".into()),
        watcher: key("bob", "L").uri,
        to_uri: "sip:alice@example.com".into(),
        from_uri: "sip:bob@example.com".into(),
        contact: "sip:bob@10.0.0.2:5060".into(),
        route_set: vec!["<sip:proxy;lr>".into()],
        local_contact: "sip:presence@10.0.0.1".into(),
        remote_cseq: 3,
        local_cseq: 12,
        expires_at: Timestamp(99_000),
        status: SubStatus::Active,
        reason: None,
        version: 4,
        user_agent: Some("ua".into()),
        transport: "udp".into(),
        source: "10.0.0.2:5060".into(),
    }
}

fn frames() -> Vec<Frame> {
    let sub: SubRecord = Record {
        key: dialog().id,
        version: Versioned {
            stamp: stamp(5, 1, "n2"),
            state: State::Live(OwnedDialog {
                dialog: dialog(),
                owner: NodeId::new("n2"),
            }),
        },
    };
    let pubrec = live(
        key("alice", "L"),
        stamp(4, 0, "n1"),
        publication("e", "<doc/>", 9_000, "n1"),
    );
    vec![
        Frame::Hello(Hello {
            protocol: PROTOCOL,
            node: NodeId::new("n1"),
            advertise: "127.0.0.1:5070".into(),
        }),
        Frame::Pub(SyncMsg::Delta(vec![
            pubrec.clone(),
            removed(key("bob", "L"), stamp(6, 0, "n1"), 7),
        ])),
        Frame::Pub(SyncMsg::DigestRequest {
            buckets: vec![(3, 42), (1023, u64::MAX)],
        }),
        Frame::Pub(SyncMsg::DigestDiff {
            buckets: vec![3],
            entries: vec![(key("a", "L"), stamp(1, 0, "n3"))],
        }),
        Frame::Pub(SyncMsg::Pull {
            keys: vec![key("a", "L")],
        }),
        Frame::Pub(SyncMsg::Batch(vec![pubrec])),
        Frame::Sub(SyncMsg::Delta(vec![sub.clone()])),
        Frame::Sub(SyncMsg::Batch(vec![sub])),
        Frame::Ping { nonce: 77 },
        Frame::Pong { nonce: u64::MAX },
    ]
}

#[test]
fn every_frame_round_trips_whole_and_byte_by_byte() {
    let all = frames();
    let stream: Vec<u8> = all.iter().flat_map(encode_frame).collect();
    let mut whole = FrameDecoder::new(DEFAULT_MAX_FRAME);
    assert_eq!(whole.feed(&stream), Ok(all.clone()));
    assert_eq!(whole.buffered(), 0);

    let mut bytewise = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut got = Vec::new();
    for b in &stream {
        got.extend(
            bytewise
                .feed(std::slice::from_ref(b))
                .expect("valid stream"),
        );
    }
    assert_eq!(got, all);
}

#[test]
fn length_prefix_is_big_endian_over_the_envelope() {
    let bytes = encode_frame(&Frame::Ping { nonce: 1 });
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert_eq!(len, bytes.len() - 4);
    assert_eq!(bytes[4], crate::cluster::wire::FRAME_CODEC_VERSION);
    assert_eq!(
        decode_frame(&bytes[4..], DEFAULT_MAX_FRAME),
        Ok(Frame::Ping { nonce: 1 })
    );
}

#[test]
fn oversized_frame_is_refused_before_its_body_arrives() {
    let mut d = FrameDecoder::new(1_000);
    let err = d.feed(&1_001u32.to_be_bytes()).unwrap_err();
    assert_eq!(
        err,
        FrameError::TooLarge {
            len: 1_001,
            max: 1_000
        }
    );
    assert_eq!(d.buffered(), 0, "nothing kept after a refusal");
    // The decoder stays failed: the stream cannot be resynchronised.
    assert_eq!(
        d.feed(&encode_frame(&Frame::Ping { nonce: 1 })),
        Err(FrameError::Failed)
    );
    // A frame that fits the prefix check but whose body claims more than the limit inside.
    let mut inner = vec![crate::cluster::wire::FRAME_CODEC_VERSION, 1, 253];
    inner.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let mut framed = (inner.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&inner);
    let mut d = FrameDecoder::new(1_000);
    assert!(matches!(d.feed(&framed), Err(FrameError::Codec(_))));
}

#[test]
fn protocol_compatibility_is_by_major_version() {
    assert!(compatible(PROTOCOL, PROTOCOL));
    assert!(compatible(0x0100, 0x0107));
    assert!(!compatible(0x0100, 0x0200));
    assert!(!compatible(PROTOCOL, PROTOCOL + 0x0100));
}

proptest! {
    /// Garbage never panics: it decodes to some frame or is refused.
    #[test]
    fn garbage_is_refused_not_panicked_on(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut d = FrameDecoder::new(4_096);
        let _ = d.feed(&bytes);
        prop_assert!(d.buffered() <= 4 + 4_096);
        let _ = decode_frame(&bytes, 4_096);
    }

    /// A valid stream cut at any points decodes to the same frames.
    #[test]
    fn any_chunking_yields_the_same_frames(cuts in proptest::collection::vec(0usize..2_000, 0..8)) {
        let all = frames();
        let stream: Vec<u8> = all.iter().flat_map(encode_frame).collect();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort();
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for w in points.windows(2) {
            got.extend(d.feed(&stream[w[0]..w[1]]).expect("valid stream"));
        }
        prop_assert_eq!(got, all);
    }
}
