//! `cairn serve` as a child process on a free loopback port, for tests that
//! need a real graph server (Cincinnati clients, `server:` sources).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `cairn serve`; killed when dropped.
#[derive(Debug)]
pub struct GraphServer {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub listen: String,
}

impl GraphServer {
    /// Serve one stream, `stable`, from a signed document in a registry:
    /// `cairn` is the binary, `dir` holds the configuration.
    pub fn document(
        cairn: &str,
        dir: &Path,
        registry_host: &str,
        location: &str,
        key: &str,
    ) -> GraphServer {
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "insecure_registries = [\"{registry_host}\"]\n[[stream]]\nname = \"stable\"\n\
                 document = {{ location = \"{location}\", keys = [\"{key}\"] }}\n"
            ),
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        GraphServer::with_config(cairn, &config)
    }

    /// Serve what the configuration file `config` says; returns once every
    /// stream has a graph (`/readyz` answers 200).
    pub fn with_config(cairn: &str, config: &Path) -> GraphServer {
        // The log says why a server never became ready, and which port the
        // kernel gave it: port 0 leaves no window for another process to
        // take a port picked here.
        let log_path = config.with_extension("log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let mut child = Command::new(cairn)
            .args(["serve", "--config", &config.display().to_string()])
            .args(["--listen", "127.0.0.1:0"])
            // The bound port is read from an info line, whatever the caller's level.
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cairn} serve: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let listen = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(address) = bound_address(&text) {
                break address;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("cairn serve exited ({status}) before listening; its log:\n{text}");
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("cairn serve logged no listening address within 30 s; its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let server = GraphServer { child, listen };
        while !server.ready() {
            assert!(
                Instant::now() < deadline,
                "cairn serve on {} was not ready within 30 s; its log:\n{}",
                server.listen,
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `GET path`: the status code and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(&self.listen)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.listen));
        let mut answer = String::new();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .and_then(|()| stream.read_to_string(&mut answer))
        .unwrap_or_else(|e| panic!("GET {path} from {}: {e}", self.listen));
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("GET {path}: no header end in {answer:?}"));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("GET {path}: no status in {head:?}"));
        (status, body.to_string())
    }

    fn ready(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(&self.listen) else {
            return false;
        };
        let mut answer = String::new();
        write!(
            stream,
            "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .and_then(|()| stream.read_to_string(&mut answer))
        .is_ok_and(|_| answer.starts_with("HTTP/1.1 200"))
    }

    /// Stop the server now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in `cairn serve`'s "serving address=…" log line.
pub fn bound_address(log: &str) -> Option<String> {
    log.lines()
        .filter(|line| line.contains(" serving "))
        .find_map(|line| line.split_once("address=")?.1.split_whitespace().next())
        .map(str::to_string)
}

impl Drop for GraphServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Prometheus text a `cairn serve` at `base_url` exposes on `/metrics`.
pub async fn scrape_metrics(base_url: &str) -> String {
    let url = format!("{base_url}/metrics");
    reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading {url}: {e}"))
}
