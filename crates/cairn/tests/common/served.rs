//! `cairn serve` as a child process, on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `cairn serve`, killed (SIGKILL) when dropped.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cairn serve --config <dir>/server.toml` on a free loopback port;
/// waits until it logs the address it listens on.
pub fn serve(dir: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("server.toml"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn serve starts");
    let stderr = child.stderr.take().expect("piped");
    let (lines, seen) = std::sync::mpsc::channel();
    // Keeps draining after the address is found, so the pipe never fills.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = seen.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cairn serve did not start:\n{log}");
        };
        if let Some(at) = line.find("address=") {
            let address: String = line[at + "address=".len()..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            return Served {
                child,
                url: format!("http://{address}"),
            };
        }
        log.push_str(&line);
        log.push('\n');
    }
}
