//! The SIP requests the load tool sends, the Call-ID scheme that maps answers back to
//! transactions, and the trivial responder of `--scenario echo`.
//!
//! Invariants: a request of transaction `id` of run `run` carries Call-ID `lt{run}-{id}`,
//! so [`parse_id`] finds its transaction and nothing from another run (or a request the tool
//! sends outside the stepping machinery, Call-ID `px…`) is ever counted. The first leg of a
//! two-leg flow has CSeq 1, the second CSeq 2.

use std::net::SocketAddr;

use crate::Flow;

/// The transaction id of a Call-ID of run `run`.
pub(crate) fn parse_id(call_id: &str, run: &str) -> Option<u64> {
    let rest = call_id.strip_prefix("lt")?.strip_prefix(run)?;
    rest.strip_prefix('-')?.parse().ok()
}

/// The presentity URI of presentity number `u`.
pub(crate) fn uri(u: u64) -> String {
    format!("sip:user{u}@example.com")
}

/// A PIDF document for `uri` whose tuple id is `marker` (so a NOTIFY carrying it can be
/// recognised).
pub(crate) fn pidf(uri: &str, marker: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{uri}\">\r\n<tuple id=\"{marker}\"><status><basic>open</basic></status></tuple>\r\n</presence>\r\n"
    )
}

/// The parts of one request that differ between flows and legs.
struct Req<'a> {
    method: &'a str,
    uri: &'a str,
    from: String,
    to_tag: Option<&'a str>,
    call_id: String,
    cseq: u32,
    expires: u32,
    extra: String,
    body: String,
}

fn encode(r: &Req<'_>, branch: &str, port: u16) -> String {
    let to_tag = r.to_tag.map_or(String::new(), |t| format!(";tag={t}"));
    format!(
        "{m} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=f{cid}\r\n\
         To: <{uri}>{to_tag}\r\n\
         Call-ID: {cid}\r\n\
         CSeq: {cseq} {m}\r\n\
         Event: presence\r\n\
         Expires: {exp}\r\n\
         {extra}Content-Length: {len}\r\n\r\n{body}",
        m = r.method,
        uri = r.uri,
        from = r.from,
        cid = r.call_id,
        cseq = r.cseq,
        exp = r.expires,
        extra = r.extra,
        len = r.body.len(),
        body = r.body,
    )
}

/// The first request of transaction `id` to presentity `user{u}`, sent from `port`.
pub(crate) fn build(flow: Flow, run: &str, id: u64, u: u64, port: u16) -> String {
    let uri = uri(u);
    let call_id = format!("lt{run}-{id}");
    let branch = format!("lt{run}x{id}a");
    let req = match flow {
        Flow::Publish | Flow::Refresh => Req {
            method: "PUBLISH",
            from: uri.clone(),
            extra: "Content-Type: application/pidf+xml\r\n".into(),
            body: pidf(&uri, &format!("t{id}")),
            ..subscribe_req(&uri, call_id, id, port)
        },
        Flow::Subscribe | Flow::Cycle => subscribe_req(&uri, call_id, id, port),
    };
    encode(&req, &branch, port)
}

fn subscribe_req(uri: &str, call_id: String, id: u64, port: u16) -> Req<'_> {
    Req {
        method: "SUBSCRIBE",
        uri,
        from: format!("sip:watcher{id}@example.com"),
        to_tag: None,
        call_id,
        cseq: 1,
        expires: 3600,
        extra: format!("Contact: <sip:watcher@127.0.0.1:{port}>\r\n"),
        body: String::new(),
    }
}

/// The second leg of a two-leg flow: for `Refresh` a body-less PUBLISH with
/// `SIP-If-Match: tag`; for `Cycle` an in-dialog SUBSCRIBE with Expires 0 and To-tag `tag`.
/// `None` for the one-leg flows.
pub(crate) fn second_leg(
    flow: Flow,
    run: &str,
    id: u64,
    u: u64,
    port: u16,
    tag: &str,
) -> Option<String> {
    let uri = uri(u);
    let call_id = format!("lt{run}-{id}");
    let branch = format!("lt{run}x{id}b");
    let req = match flow {
        Flow::Refresh => Req {
            method: "PUBLISH",
            from: uri.clone(),
            cseq: 2,
            extra: format!("SIP-If-Match: {tag}\r\n"),
            ..subscribe_req(&uri, call_id, id, port)
        },
        Flow::Cycle => Req {
            to_tag: Some(tag),
            cseq: 2,
            expires: 0,
            ..subscribe_req(&uri, call_id, id, port)
        },
        Flow::Publish | Flow::Subscribe => return None,
    };
    Some(encode(&req, &branch, port))
}

/// A PUBLISH outside the stepping machinery (Call-ID `px…`, so its answer is ignored) to
/// `user{u}` whose tuple id is `marker`.
pub(crate) fn marked_publish(u: u64, marker: &str, port: u16) -> String {
    let uri = uri(u);
    let req = Req {
        method: "PUBLISH",
        from: uri.clone(),
        extra: "Content-Type: application/pidf+xml\r\n".into(),
        body: pidf(&uri, marker),
        ..subscribe_req(&uri, format!("px{marker}"), 0, port)
    };
    encode(&req, &format!("px{marker}"), port)
}

/// One subscription the echo responder knows (for its fan-out).
struct EchoDialog {
    to: SocketAddr,
    call_id: String,
    from: String,
    to_hdr: String,
}

/// The trivial responder of `--scenario echo`, on its own thread: every request gets a 200
/// copying its headers (body dropped, `SIP-ETag` added); a SUBSCRIBE also gets a NOTIFY to
/// its source (`terminated` when Expires is 0). Its socket asks for a `recv_buffer`-byte
/// kernel buffer, like the servers measured. A PUBLISH with a body is sent in a NOTIFY to
/// every subscriber seen so far (at most `max_dialogs` remembered): the fan-out ceiling.
pub(crate) fn start_echo(max_dialogs: usize, recv_buffer: usize) -> std::io::Result<SocketAddr> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket2::SockRef::from(&sock).set_recv_buffer_size(recv_buffer)?;
    let addr = sock.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut dialogs: Vec<EchoDialog> = Vec::new();
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let mut lines = head.split("\r\n");
            let first = lines.next().unwrap_or("");
            if first.starts_with("SIP/2.0") {
                continue; // a response (to our NOTIFY)
            }
            let mut resp = String::from("SIP/2.0 200 OK\r\n");
            let (mut hdr_from, mut hdr_to, mut call_id, mut unsub) = ("", "", "", false);
            for l in lines {
                let (name, value) = l.split_once(':').unwrap_or((l, ""));
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" | "content-type" => continue,
                    "from" => hdr_from = value.trim(),
                    "to" => hdr_to = value.trim(),
                    "call-id" => call_id = value.trim(),
                    "expires" => unsub = value.trim() == "0",
                    _ => {}
                }
                resp.push_str(l);
                resp.push_str("\r\n");
            }
            resp.push_str("SIP-ETag: echo\r\nContent-Length: 0\r\n\r\n");
            let _ = sock.send_to(resp.as_bytes(), from);
            let notify = |d: &EchoDialog, state: &str, body: &str| {
                format!(
                    "NOTIFY sip:watcher@{} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKe{}\r\n\
                     Max-Forwards: 70\r\nFrom: {};tag=echo\r\nTo: {}\r\nCall-ID: {}\r\n\
                     CSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: {state}\r\n\
                     Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
                    d.to,
                    d.call_id,
                    d.to_hdr,
                    d.from,
                    d.call_id,
                    body.len()
                )
            };
            if first.starts_with("SUBSCRIBE ") {
                let d = EchoDialog {
                    to: from,
                    call_id: call_id.into(),
                    from: hdr_from.into(),
                    to_hdr: hdr_to.split(";tag").next().unwrap_or("").into(),
                };
                let state = if unsub {
                    "terminated"
                } else {
                    "active;expires=3600"
                };
                let _ = sock.send_to(notify(&d, state, "").as_bytes(), from);
                if !unsub && dialogs.len() < max_dialogs {
                    dialogs.push(d);
                }
            } else if first.starts_with("PUBLISH ") && !body.is_empty() {
                for d in &dialogs {
                    let _ = sock.send_to(notify(d, "active;expires=3600", body).as_bytes(), d.to);
                }
            }
        }
    });
    Ok(addr)
}
