//! The SIP layer: bytes ⇄ typed messages. No state, no sockets, no clock.
//!
//! * [`parse`] turns one complete message (a UDP datagram, or a TCP frame cut by
//!   [`frame_length`]) into a [`Message`], or says why not ([`ParseError`]: drop, or 400
//!   with the [`EchoHeaders`] salvaged).
//! * [`OutResponse`] builds the response to a [`Request`]; [`OutRequest::notify`] builds
//!   the NOTIFYs the server originates.
//! * [`headers`] holds the typed headers rsip does not provide (Event,
//!   Subscription-State, SIP-ETag, SIP-If-Match, Allow-Events, Expires, Min-Expires).
//!
//! Why rsip 0.4.0 is not on this path (measured against the pinned version): it rejects
//! extension methods (which must get 405, not 400), bracketed IPv6 Request-URIs
//! (`sips:a@[2001:db8::1]`) and `tel:` URIs, accepts `SIP/1.0`, knows neither compact names,
//! folding, bare LF nor `Name : value`, and its errors embed the whole message. The
//! normaliser has to walk every header line anyway, so the start line and the header split
//! are done here, and From/To/Contact/Via values by the small [`NameAddr`] and [`Via`]
//! parsers, which keep the raw text responses must echo.
//!
//! Invariants: nothing in this module panics on network input; every [`Request`] has the
//! mandatory headers of RFC 3261 §8.1.1 (Max-Forwards may be missing); every encoded
//! message carries Content-Length.

mod build;
mod framing;
pub mod headers;
mod message;
mod name_addr;
mod normalise;
mod parse;
mod via;

pub use build::{encode_notify, NotifyParams, OutRequest, OutResponse};
pub use framing::{frame_length, FrameError};
pub use message::{CSeq, HeaderName, Message, Method, Request, Response};
pub use name_addr::NameAddr;
pub(crate) use parse::request_uri_ok;
pub use parse::{parse, EchoHeaders, ParseError};
pub use via::Via;

#[cfg(test)]
mod build_tests;
#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod proptests;
