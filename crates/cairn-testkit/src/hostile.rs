//! A scripted HTTP server on a raw socket, for replies no well-behaved
//! framework sends: a `Content-Length` of gigabytes, a body that never ends,
//! or a fixed series of failures. It records every request it reads.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A `Content-Length` no client should believe: 10 GiB.
pub const HUGE_LENGTH: u64 = 10 << 30;

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete reply: status, extra headers and body (with its true length).
    Full {
        /// HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// A reply announcing `length` bytes that sends `prefix` and then holds
    /// the connection open without sending the rest.
    Announced {
        /// HTTP status.
        status: u16,
        /// The `Content-Length` claimed.
        length: u64,
        /// What is actually sent.
        prefix: Vec<u8>,
    },
    /// A chunked body with no length that keeps coming until the client hangs up.
    Endless {
        /// HTTP status.
        status: u16,
    },
    /// Close the connection without answering.
    Hangup,
}

impl Reply {
    /// A complete reply with no extra headers.
    pub fn full(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A complete reply with one extra header.
    pub fn with_header(status: u16, name: &str, value: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: vec![(name.to_string(), value.to_string())],
            body: body.into(),
        }
    }
}

/// One request as the server read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// The first value of a header (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Script = dyn Fn(&SeenRequest, usize) -> Reply + Send + Sync;

/// A running scripted server.
pub struct HostileServer {
    /// `127.0.0.1:PORT`.
    pub host: String,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HostileServer {
    /// Start a server that answers each request with `script(request, n)`,
    /// where `n` counts the requests before this one (0 for the first).
    pub async fn start<F>(script: F) -> HostileServer
    where
        F: Fn(&SeenRequest, usize) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("hostile server: {e}"));
        let host = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("hostile server: {e}"))
            .to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let script = Arc::clone(&script);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let _ = answer(stream, script.as_ref(), &seen).await;
                });
            }
        });
        HostileServer {
            host,
            requests,
            task,
        }
    }

    /// `http://HOST` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    /// Every request read so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many requests so far asked for a blob (`/v2/…/blobs/…`).
    pub fn blob_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.target.contains("/blobs/"))
            .count()
    }
}

impl std::fmt::Debug for HostileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileServer")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    mut stream: TcpStream,
    script: &Script,
    seen: &Mutex<Vec<SeenRequest>>,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let count = {
        let mut seen = seen.lock().map_err(|_| std::io::Error::other("poisoned"))?;
        seen.push(request.clone());
        seen.len() - 1
    };
    match script(&request, count) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
            stream.shutdown().await
        }
        Reply::Announced {
            status,
            length,
            prefix,
        } => {
            let head = format!("HTTP/1.1 {status} X\r\ncontent-length: {length}\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&prefix).await?;
            // Hold on: a client that waits for the rest waits until its timeout.
            tokio::time::sleep(Duration::from_secs(120)).await;
            Ok(())
        }
        Reply::Hangup => Ok(()),
        Reply::Endless { status } => {
            let head = format!("HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
            // Ends when the client closes the connection (the write fails).
            loop {
                stream.write_all(chunk.as_bytes()).await?;
            }
        }
    }
}

/// The request line and headers; the body (by `content-length`) is read and dropped.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<SeenRequest>> {
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1024];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buffer.len() > 64 * 1024 {
            return Ok(None);
        }
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut remaining = length.saturating_sub(buffer.len() - end);
    while remaining > 0 {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        remaining = remaining.saturating_sub(n);
    }
    Ok(Some(SeenRequest {
        method,
        target,
        headers,
    }))
}
