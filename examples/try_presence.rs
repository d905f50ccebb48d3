//! A tiny SIP user agent for trying a running presenced by hand: Alice publishes, Bob
//! subscribes, the NOTIFY with Alice's state is printed and answered, then Bob unsubscribes.
//!
//! ```sh
//! cargo run --release -- --config config/presenced.toml          # terminal 1
//! cargo run --example try_presence -- 127.0.0.1:5060             # terminal 2
//! ```

use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let server = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5060".into());
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let port = sock.local_addr()?.port();
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
                entity=\"sip:alice@example.com\"><tuple id=\"phone\"><status><basic>open</basic></status>\
                <note>At my desk</note></tuple></presence>\r\n";
    let publish = format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKtry1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=alice1\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: try-publish\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 600\r\n\
         Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(&sock, &server, &publish, 1)?;
    let subscribe = format!(
        "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKtry2;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=bob1\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: try-subscribe\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\nExpires: 0\r\n\
         Contact: <sip:bob@127.0.0.1:{port}>\r\nAccept: application/pidf+xml\r\nContent-Length: 0\r\n\r\n"
    );
    // Expires: 0 is a fetch: one 200 and one final NOTIFY carrying the current state.
    exchange(&sock, &server, &subscribe, 2)
}

/// Sends `msg`, then prints what arrives until `expect` messages came (answering NOTIFYs).
fn exchange(sock: &UdpSocket, server: &str, msg: &str, expect: usize) -> std::io::Result<()> {
    println!(">>> sent\n{msg}");
    sock.send_to(msg.as_bytes(), server)?;
    let mut buf = [0u8; 65535];
    let mut got = 0;
    let end = Instant::now() + Duration::from_secs(5);
    while got < expect && Instant::now() < end {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        println!("<<< received from {from}\n{text}");
        got += 1;
        if text.starts_with("NOTIFY ") {
            let ok = answer(&text);
            sock.send_to(ok.as_bytes(), from)?;
            println!(">>> answered\n{ok}");
        }
    }
    if got < expect {
        eprintln!("no answer from {server}: is presenced running there?");
    }
    Ok(())
}

/// A 200 OK to a request: copies Via, From, To, Call-ID and CSeq.
fn answer(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"].contains(&name.as_str()) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}
