//! Real `presenced` processes forming a cluster on 127.0.0.1: generated certificates (with
//! the binary's own `cert` command), generated configs, temporary data directories, and a
//! UDP relay that can cut a node off (a partition) without touching the nodes.

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::binary::{free_port, free_udp_port};
use crate::common::{request, UdpClient, WAIT};

pub const BIN: &str = env!("CARGO_BIN_EXE_presenced");

/// Creates a CA and node certificates `ids` under `dir` with `presenced cert`.
pub fn make_certs(dir: &Path, ids: &[&str]) {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .output()
            .expect("presenced cert runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["cert", "create-ca", "--dir", dir.to_str().unwrap()]);
    for id in ids {
        run(&[
            "cert",
            "create-node",
            "--dir",
            dir.to_str().unwrap(),
            "--id",
            id,
        ]);
    }
}

/// The addresses one node uses.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: String,
    pub sip: u16,
    pub quic: u16,
    pub admin: u16,
    /// The address peers are told to dial (a relay's, to be able to cut the node off).
    pub advertise: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub certs: PathBuf,
    pub data: PathBuf,
    /// `[cluster] takeover_grace`, seconds.
    pub takeover_grace: u64,
}

impl NodeSpec {
    pub fn new(id: &str, certs: &Path, data_root: &Path) -> NodeSpec {
        let quic = free_udp_port();
        NodeSpec {
            id: id.to_string(),
            sip: free_port(),
            quic,
            admin: free_port(),
            advertise: SocketAddr::from(([127, 0, 0, 1], quic)),
            peers: Vec::new(),
            certs: certs.to_path_buf(),
            data: data_root.join(id),
            takeover_grace: 30,
        }
    }

    pub fn quic_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.quic))
    }

    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip))
    }

    fn config(&self, extra: &str) -> String {
        let peers: Vec<String> = self.peers.iter().map(|p| format!("\"{p}\"")).collect();
        let c = self.certs.display();
        format!(
            "[node]\nid = \"{id}\"\ndata_dir = \"{data}\"\n\
             [sip]\nlisten = [\"udp:127.0.0.1:{sip}\", \"tcp:127.0.0.1:{sip}\"]\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
             [cluster]\nenabled = true\nlisten = \"127.0.0.1:{quic}\"\nadvertise = \"{adv}\"\n\
             peers = [{peers}]\ntakeover_grace = {grace}\nca_cert = \"{c}/ca.crt\"\ncert = \"{c}/{id}.crt\"\nkey = \"{c}/{id}.key\"\n{extra}\n",
            id = self.id,
            data = self.data.display(),
            sip = self.sip,
            admin = self.admin,
            quic = self.quic,
            adv = self.advertise,
            peers = peers.join(", "),
            grace = self.takeover_grace,
        )
    }
}

/// A running node process.
pub struct ClusterNode {
    pub spec: NodeSpec,
    child: Option<Child>,
}

impl ClusterNode {
    pub fn start(spec: &NodeSpec, extra: &str) -> ClusterNode {
        std::fs::create_dir_all(&spec.data).unwrap();
        let path = spec.data.with_extension("toml");
        std::fs::write(&path, spec.config(extra)).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("presenced starts");
        let node = ClusterNode {
            spec: spec.clone(),
            child: Some(child),
        };
        node.wait_sip();
        node
    }

    fn wait_sip(&self) {
        let mut c = UdpClient::new(self.spec.sip_addr());
        let deadline = Instant::now() + WAIT * 3;
        for n in 0.. {
            let call = format!("ready-{n}");
            c.send(&request(
                "OPTIONS",
                "sip:p@127.0.0.1",
                c.port(),
                &call,
                1,
                "",
                "",
            ));
            if c.wait_for(
                Duration::from_millis(200),
                |m| matches!(m, presenced::sip::Message::Response(r) if r.call_id == call),
            )
            .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not come up",
                self.spec.id
            );
        }
    }

    /// GET an admin route as JSON.
    pub fn get(&self, path: &str) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(WAIT))
            .build()
            .into();
        let mut r = agent
            .get(&format!("http://127.0.0.1:{}{path}", self.spec.admin))
            .call()
            .expect("admin answers");
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// Peer ids this node sees up.
    pub fn peers_up(&self) -> Vec<String> {
        let v = self.get("/debug/cluster");
        let mut ids: Vec<String> = v["peers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["state"] == "up")
                    .filter_map(|p| p["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Waits until this node sees exactly `ids` up.
    pub fn wait_peers(&self, ids: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        loop {
            let up = self.peers_up();
            if up == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: peers up {up:?}, want {want:?}",
                self.spec.id
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill9(mut self) -> NodeSpec {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spec.clone()
    }

    pub fn terminate(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + WAIT;
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A relay's clients and the upstream socket of each.
type Clients = Vec<(SocketAddr, Arc<UdpSocket>)>;

/// A UDP relay on 127.0.0.1 in front of `target`: what arrives on `addr` from a client goes to
/// `target` through a socket of its own per client, and back. `cut(true)` drops everything
/// both ways; `block(client, true)` drops one client's traffic both ways (QUIC uses one UDP
/// socket per node, so a client address is a node). Threads stop when the relay is dropped.
pub struct Relay {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    blocked: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let blocked: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Arc<Mutex<Clients>> = Arc::default();
        let front = Arc::new(front);
        let dropping = {
            let (cut, blocked) = (cut.clone(), blocked.clone());
            move |client: SocketAddr| {
                cut.load(Ordering::Relaxed) || blocked.lock().unwrap().contains(&client)
            }
        };
        {
            let (front, stop, clients) = (front.clone(), stop.clone(), clients.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    if dropping(from) {
                        continue;
                    }
                    let existing = clients
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|(c, _)| *c == from)
                        .map(|(_, s)| s.clone());
                    let back = match existing {
                        Some(s) => s,
                        None => {
                            let s = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
                            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                            clients.lock().unwrap().push((from, s.clone()));
                            let (front, stop, s2, dropping) =
                                (front.clone(), stop.clone(), s.clone(), dropping.clone());
                            std::thread::spawn(move || {
                                let mut buf = vec![0u8; 65536];
                                while !stop.load(Ordering::Relaxed) {
                                    let Ok((n, _)) = s2.recv_from(&mut buf) else {
                                        continue;
                                    };
                                    if !dropping(from) {
                                        let _ = front.send_to(&buf[..n], from);
                                    }
                                }
                            });
                            s
                        }
                    };
                    let _ = back.send_to(&buf[..n], target);
                }
            });
        }
        Relay {
            addr,
            cut,
            blocked,
            stop,
        }
    }

    /// Drops (or again forwards) all traffic.
    pub fn cut(&self, on: bool) {
        self.cut.store(on, Ordering::Relaxed);
    }

    /// Drops (or again forwards) the traffic of one client.
    pub fn block(&self, client: SocketAddr, on: bool) {
        let mut b = self.blocked.lock().unwrap();
        b.retain(|c| *c != client);
        if on {
            b.push(client);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
