//! The real `presenced` binary as a child process with a generated config and its own data
//! directory: for restart and crash tests (SIGTERM, SIGKILL).

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{request, UdpClient, WAIT};

pub struct BinaryNode {
    pub udp: SocketAddr,
    pub config: PathBuf,
    child: Option<Child>,
}

/// Ports handed out lie below the kernel's ephemeral range (32768–60999 by default): the
/// kernel never picks them for a socket bound to port 0 or an outgoing connection, so a port
/// probed free stays free until the node binds it (a port probed from the ephemeral range
/// could be taken meanwhile by a client socket or a QUIC endpoint of a concurrent test).
const PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A port free for both UDP and TCP on 127.0.0.1 right now, never handed out before in this
/// process.
pub fn free_port() -> u16 {
    loop {
        let port = rand::random_range(PORTS);
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && claim(port)
        {
            return port;
        }
    }
}

/// A UDP port free on 127.0.0.1 right now, never handed out before in this process.
pub fn free_udp_port() -> u16 {
    loop {
        let port = rand::random_range(PORTS);
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() && claim(port) {
            return port;
        }
    }
}

/// Tests of one binary run in parallel and release the ports they probe before the node
/// binds them: without this registry two tests could be handed the same port, and one
/// would talk to the other's node.
fn claim(port: u16) -> bool {
    static CLAIMED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut c = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    if c.contains(&port) {
        return false;
    }
    c.push(port);
    true
}

impl BinaryNode {
    /// Writes a config under `dir` (data in `dir/data`) with `extra` appended to `[presence]`.
    pub fn configure(dir: &Path, presence: &str) -> PathBuf {
        let port = free_port();
        let data = dir.join("data");
        let text = format!(
            "[node]\nid = \"node-test\"\ndata_dir = \"{}\"\n\
             [sip]\nlisten = [\"udp:127.0.0.1:{port}\", \"tcp:127.0.0.1:{port}\"]\n\
             [admin]\nlisten = \"\"\n[log]\nlevel = \"warn\"\n[presence]\n{presence}\n",
            data.display()
        );
        let path = dir.join("presenced.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A memory-only node (`subs_db_mode = 0`) named `id` on a free UDP port, with a loopback
    /// admin endpoint on a free port (returned), its data and config under `dir`.
    pub fn start_with_admin(dir: &Path, id: &str) -> (BinaryNode, SocketAddr) {
        let (sip, admin) = (free_port(), free_port());
        let text = format!(
            "[node]\nid = \"{id}\"\ndata_dir = \"{}\"\n\
             [sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
             [presence]\nsubs_db_mode = 0\n",
            dir.join("data").display()
        );
        let config = dir.join("presenced.toml");
        std::fs::write(&config, text).unwrap();
        (
            BinaryNode::start(&config),
            SocketAddr::from(([127, 0, 0, 1], admin)),
        )
    }

    /// Starts the binary on `config` and waits until it answers OPTIONS.
    pub fn start(config: &Path) -> BinaryNode {
        let text = std::fs::read_to_string(config).unwrap();
        let port: u16 = text
            .split("udp:127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|p| p.parse().ok())
            .expect("port in config");
        let child = Command::new(env!("CARGO_BIN_EXE_presenced"))
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("presenced starts");
        let node = BinaryNode {
            udp: SocketAddr::from(([127, 0, 0, 1], port)),
            config: config.to_path_buf(),
            child: Some(child),
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&self) {
        let mut c = UdpClient::new(self.udp);
        let deadline = Instant::now() + WAIT * 3;
        let mut n = 0;
        loop {
            n += 1;
            let call_id = format!("ready-{n}");
            c.send(&request(
                "OPTIONS",
                "sip:presence@127.0.0.1",
                c.port(),
                &call_id,
                1,
                "",
                "",
            ));
            let got = c.wait_for(
                Duration::from_millis(200),
                |m| matches!(m, presenced::sip::Message::Response(r) if r.call_id == call_id),
            );
            if got.is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "presenced did not come up");
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM and wait for a clean exit (status 0).
    pub fn terminate(mut self) {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "exit after SIGTERM: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for BinaryNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
