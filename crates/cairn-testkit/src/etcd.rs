//! A real etcd cluster (Debian's `etcd-server`) on 127.0.0.1: one or more
//! members on free ports, each with its own data directory, that tests can
//! kill (SIGKILL) and restart one by one.

use crate::registry::require_binary;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary Debian's `etcd-server` package installs.
pub const ETCD_BINARY: &str = "etcd";

/// How long a member (or the cluster) may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running cluster; every member is killed when dropped.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
    directory: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// `GET /health` on a member's client port: whether it answers healthy
/// (it has a leader and its cluster has a quorum).
/// The answer of member `port` to `GET path`, empty when there is none.
fn get(port: u16, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    ) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn healthy(port: u16) -> bool {
    get(port, "/health").contains("\"health\":\"true\"")
}

impl EtcdCluster {
    /// Start `members` members and wait until every one is healthy. Panics,
    /// saying what to install, when `etcd` is missing.
    pub fn start(members: usize) -> EtcdCluster {
        require_binary(ETCD_BINARY, "etcd-server");
        let directory = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let members: Vec<Member> = (0..members)
            .map(|n| Member {
                name: format!("m{n}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let token = format!(
            "cairn-test-{}-{}",
            std::process::id(),
            directory
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut cluster = EtcdCluster {
            members,
            token,
            directory,
        };
        for n in 0..cluster.members.len() {
            cluster.spawn(n);
        }
        for n in 0..cluster.members.len() {
            cluster.wait_healthy(n);
        }
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The log file of member `n`.
    pub fn log_path(&self, n: usize) -> PathBuf {
        self.directory.path().join(format!("m{n}.log"))
    }

    fn spawn(&mut self, n: usize) {
        let initial_cluster = self.initial_cluster();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(n))
            .unwrap_or_else(|e| panic!("etcd log file: {e}"));
        let member = &self.members[n];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let data = self.directory.path().join(&member.name);
        // Short heartbeats and elections: a killed leader is replaced within
        // about a second, so the tests wait less.
        let child = Command::new(ETCD_BINARY)
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            // As docs/fleet-lock.md asks of production members: without it,
            // every leader change gives each lease its whole TTL again.
            .arg("--experimental-enable-lease-checkpoint=true")
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting etcd: {e} (apt-get install -y etcd-server)"));
        self.members[n].child = Some(child);
    }

    /// Every member's client URL, `http://127.0.0.1:<port>`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The process id of member `n`, while it runs.
    pub fn pid(&self, n: usize) -> Option<u32> {
        self.members[n].child.as_ref().map(Child::id)
    }

    /// SIGKILL member `n` and reap it.
    pub fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.members[n].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start member `n` again on its data directory and ports (it rejoins
    /// the cluster it was in). Does not wait: see [`EtcdCluster::wait_healthy`].
    pub fn restart(&mut self, n: usize) {
        self.kill(n);
        self.spawn(n);
    }

    /// The member that leads the cluster now (its `etcd_server_is_leader`
    /// metric is 1), if a running one does.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&n| {
            self.members[n].child.is_some()
                && get(self.members[n].client_port, "/metrics")
                    .lines()
                    .any(|line| line.trim() == "etcd_server_is_leader 1")
        })
    }

    /// Whether member `n` answers healthy now.
    pub fn is_healthy(&self, n: usize) -> bool {
        healthy(self.members[n].client_port)
    }

    /// Wait until member `n` answers healthy; panics with its log after a minute.
    pub fn wait_healthy(&mut self, n: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.is_healthy(n) {
            if let Some(child) = self.members[n].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "etcd member {n} exited ({status}):\n{}",
                    std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd member {n} was not healthy within {START_TIMEOUT:?}:\n{}",
                    std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for n in 0..self.members.len() {
            self.kill(n);
        }
    }
}
