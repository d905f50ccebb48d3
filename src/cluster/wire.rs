//! The frames between nodes and their byte framing on a QUIC stream.
//!
//! A frame on the stream is a big-endian `u32` length, then that many bytes: a
//! [`crate::codec`] envelope (version byte [`FRAME_CODEC_VERSION`], bincode body) of one
//! [`Frame`]. Invariants:
//! * [`FrameDecoder`] never buffers more than one frame's limit plus the chunk it is given,
//!   refuses a length prefix over the limit before reading the body, and decodes with
//!   [`codec::decode_limited`], so hostile bytes cannot make it allocate without bound; after
//!   any error it stays failed (the stream cannot be resynchronised: close it).
//! * The first frame each side sends is [`Frame::Hello`]; a peer whose major [`PROTOCOL`]
//!   differs is refused ([`compatible`]). Within a major version a minor bump may only append
//!   new [`Frame`] variants, sent only to peers whose minor knows them; changing an existing
//!   frame, [`crate::cluster::digest::BUCKETS`] or the digest hash is a major bump.

use serde::{Deserialize, Serialize};

use crate::cluster::merge::{OwnedDialog, PubKey};
use crate::cluster::sync::SyncMsg;
use crate::codec::{self, CodecError};
use crate::ids::{DialogId, NodeId};
use crate::presence::publication::Publication;

/// This build's protocol version: `major << 8 | minor`.
///
/// 2.0: the hand-rolled `Members` gossip frame is gone (membership is SWIM over QUIC
/// datagrams, [`crate::cluster::members`]); removing a variant renumbers the ones after it,
/// hence a major bump (1.x nodes are refused at the handshake).
pub const PROTOCOL: u16 = 2 << 8;

/// The codec envelope version of a [`Frame`].
pub const FRAME_CODEC_VERSION: u8 = 1;

/// Default largest frame accepted (bytes after the length prefix).
pub const DEFAULT_MAX_FRAME: u32 = 16 << 20;

/// Whether two protocol versions can talk: same major version.
pub fn compatible(a: u16, b: u16) -> bool {
    a >> 8 == b >> 8
}

/// The handshake: who the peer is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's [`PROTOCOL`].
    pub protocol: u16,
    /// The sender's node id (must match its certificate; checked by the transport).
    pub node: NodeId,
    /// The address other nodes should dial to reach the sender.
    pub advertise: String,
}

/// Everything one node sends another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The handshake, first on every connection.
    Hello(Hello),
    /// Publication replication (deltas and anti-entropy).
    Pub(SyncMsg<PubKey, Publication>),
    /// Subscription replication (deltas and anti-entropy).
    Sub(SyncMsg<DialogId, OwnedDialog>),
    /// Liveness / RTT probe.
    Ping {
        /// Echoed in the [`Frame::Pong`].
        nonce: u64,
    },
    /// Answer to a [`Frame::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
}

/// Why bytes from a peer were refused. The stream must then be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The frame's bytes do not decode.
    #[error("undecodable frame: {0}")]
    Codec(#[from] CodecError),
    /// An earlier error left the decoder unusable.
    #[error("frame decoder failed earlier")]
    Failed,
}

/// Encodes one frame with its length prefix.
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    let body = codec::encode(FRAME_CODEC_VERSION, frame);
    // A frame over 4 GiB cannot be produced: batches are bounded by `SyncLimits` far below.
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes one frame body (the bytes after the length prefix), refusing more than `max`.
pub fn decode_frame(bytes: &[u8], max: u32) -> Result<Frame, CodecError> {
    codec::decode_limited(FRAME_CODEC_VERSION, bytes, u64::from(max))
}

/// Reassembles frames from the chunks a stream delivers.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: u32,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder refusing frames larger than `max` bytes.
    pub fn new(max: u32) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            max,
            failed: false,
        }
    }

    /// Feeds the next chunk and returns every frame it completes, in order. After an error
    /// every call fails.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Frame>, FrameError> {
        if self.failed {
            return Err(FrameError::Failed);
        }
        self.buf.extend_from_slice(chunk);
        let mut frames = Vec::new();
        let mut at = 0usize;
        let result = loop {
            let Some(prefix) = self.buf.get(at..at + 4) else {
                break Ok(());
            };
            let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
            if len > self.max {
                break Err(FrameError::TooLarge { len, max: self.max });
            }
            // `len` fits usize on every target we build for (u32 ≤ usize on 32/64-bit).
            let end = at + 4 + len as usize;
            let Some(body) = self.buf.get(at + 4..end) else {
                break Ok(());
            };
            match decode_frame(body, self.max) {
                Ok(frame) => frames.push(frame),
                Err(e) => break Err(FrameError::Codec(e)),
            }
            at = end;
        };
        self.buf.drain(..at);
        match result {
            Ok(()) => Ok(frames),
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                Err(e)
            }
        }
    }

    /// Bytes held for an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
