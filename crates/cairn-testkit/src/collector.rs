//! A stand-in for the report collector of `cairn serve`: a real HTTP/1.1
//! server on a raw socket that keeps every byte of every request it reads
//! (request line, headers, body), counts the connections it accepts, and
//! answers as the test says: counted (200), the per-address limit (429 with
//! `Retry-After`), unavailable (503), another refusal, or down (the
//! connection is closed unanswered). Like the real collector it answers a
//! report id it has counted before with `{"counted": false, "duplicate": true}`.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the stand-in answers the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 `{"counted": true}` (or the duplicate answer for an id seen).
    Counted,
    /// 429 `address_limit` with `Retry-After: <seconds>`.
    AddressLimit(u64),
    /// 503 `backend_unavailable`.
    Unavailable,
    /// Another status and error kind (`422`, `implausible`).
    Refuse(u16, &'static str),
    /// Accept the connection and close it without reading or answering.
    Down,
}

/// One request, every byte as it arrived, and how it was answered.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The request line, headers and body, exactly as read.
    pub raw: Vec<u8>,
    /// When its last byte arrived.
    pub received: jiff::Timestamp,
    /// The status it was answered with.
    pub status: u16,
}

impl Captured {
    fn split(&self) -> (&[u8], &[u8]) {
        let end = self
            .raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.raw.len(), |at| at + 4);
        self.raw.split_at(end)
    }

    /// The request line (`POST /v2/reports/stable HTTP/1.1`).
    pub fn request_line(&self) -> String {
        let (head, _) = self.split();
        String::from_utf8_lossy(head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// Every header in the order sent, names in lower case.
    pub fn headers(&self) -> Vec<(String, String)> {
        let (head, _) = self.split();
        String::from_utf8_lossy(head)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect()
    }

    /// The body's bytes.
    pub fn body(&self) -> &[u8] {
        self.split().1
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(self.body()).unwrap_or(Value::Null)
    }
}

#[derive(Debug)]
struct Inner {
    answer: Answer,
    hold: Duration,
    connections: usize,
    requests: Vec<Captured>,
    counted: BTreeSet<String>,
}

/// A running stand-in.
#[derive(Debug)]
pub struct CollectorStandIn {
    /// `http://127.0.0.1:PORT`: what `reports.url` names.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl CollectorStandIn {
    /// Start, answering `answer` until told otherwise.
    pub async fn start(answer: Answer) -> CollectorStandIn {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("collector stand-in: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("collector stand-in: {e}"));
        let inner = Arc::new(Mutex::new(Inner {
            answer,
            hold: Duration::ZERO,
            connections: 0,
            requests: Vec::new(),
            counted: BTreeSet::new(),
        }));
        let shared = Arc::clone(&inner);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(stream, &shared).await;
                });
            }
        });
        CollectorStandIn {
            url: format!("http://{address}"),
            inner,
            task,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner)
    }

    /// Answer the next requests so.
    pub fn answer(&self, answer: Answer) {
        self.with(|inner| inner.answer = answer);
    }

    /// Hold each answer back this long after the request arrived (so a
    /// test can look at the sender while it waits).
    pub fn hold(&self, hold: Duration) {
        self.with(|inner| inner.hold = hold);
    }

    /// Connections accepted so far, answered or not.
    pub fn connections(&self) -> usize {
        self.with(|inner| inner.connections)
    }

    /// Every request read so far, in order of arrival.
    pub fn requests(&self) -> Vec<Captured> {
        self.with(|inner| inner.requests.clone())
    }

    /// The bodies of the requests answered 200, in order.
    pub fn counted(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.status == 200)
            .map(Captured::json)
            .collect()
    }
}

impl Drop for CollectorStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read one request, keep it, answer it, close.
async fn serve(mut stream: TcpStream, shared: &Mutex<Inner>) -> std::io::Result<()> {
    let answer = {
        let mut inner = shared
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        inner.connections += 1;
        inner.answer.clone()
    };
    if answer == Answer::Down {
        return Ok(());
    }
    let Some(raw) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let captured = Captured {
        raw,
        received: jiff::Timestamp::now(),
        status: 0,
    };
    let id = captured.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, headers, body, hold) = {
        let mut inner = shared
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        let (status, headers, body) = match &answer {
            Answer::Counted if inner.counted.contains(&id) => (
                200,
                Vec::new(),
                json!({"counted": false, "duplicate": true}),
            ),
            Answer::Counted => {
                inner.counted.insert(id);
                (200, Vec::new(), json!({"counted": true}))
            }
            Answer::AddressLimit(seconds) => (
                429,
                vec![format!("retry-after: {seconds}")],
                json!({"kind": "address_limit", "value": "one report of this outcome per release per hour from this address"}),
            ),
            Answer::Unavailable => (
                503,
                Vec::new(),
                json!({"kind": "backend_unavailable", "value": "the store failed"}),
            ),
            Answer::Refuse(status, kind) => (
                *status,
                Vec::new(),
                json!({"kind": kind, "value": "refused"}),
            ),
            Answer::Down => (0, Vec::new(), Value::Null),
        };
        inner.requests.push(Captured { status, ..captured });
        (status, headers, body, inner.hold)
    };
    tokio::time::sleep(hold).await;
    let body = body.to_string();
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for header in headers {
        head.push_str(&header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The request's bytes: head, and a body of its `content-length`.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if raw.len() > 64 * 1024 {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let length: usize = String::from_utf8_lossy(&raw[..head_end])
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + length.min(1 << 20) {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(url: &str, body: &str) -> (u16, Option<String>, String) {
        let response = reqwest::Client::new()
            .post(format!("{url}/v2/reports/stable"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        (status, retry, response.text().await.expect("body"))
    }

    #[tokio::test]
    async fn it_keeps_every_byte_and_answers_as_scripted() {
        let collector = CollectorStandIn::start(Answer::Counted).await;
        let body = r#"{"id":"00112233445566778899aabbccddeeff"}"#;
        assert_eq!(post(&collector.url, body).await.2, r#"{"counted":true}"#);
        // The same id again: a duplicate.
        assert_eq!(
            post(&collector.url, body).await.2,
            r#"{"counted":false,"duplicate":true}"#
        );
        collector.answer(Answer::AddressLimit(1200));
        let (status, retry, text) = post(&collector.url, body).await;
        assert_eq!((status, retry.as_deref()), (429, Some("1200")));
        assert!(text.contains("address_limit"), "{text}");
        collector.answer(Answer::Unavailable);
        assert_eq!(post(&collector.url, body).await.0, 503);
        collector.answer(Answer::Refuse(422, "implausible"));
        let (status, _, text) = post(&collector.url, body).await;
        assert_eq!(status, 422);
        assert!(text.contains("implausible"), "{text}");
        collector.answer(Answer::Down);
        assert!(
            reqwest::Client::new()
                .post(format!("{}/v2/reports/stable", collector.url))
                .body(body)
                .send()
                .await
                .is_err(),
            "down: no answer"
        );
        assert_eq!(collector.connections(), 6);
        let requests = collector.requests();
        assert_eq!(requests.len(), 5, "the unanswered one was not read");
        let first = &requests[0];
        assert_eq!(first.request_line(), "POST /v2/reports/stable HTTP/1.1");
        assert!(
            first
                .headers()
                .contains(&("content-type".to_string(), "application/json".to_string()))
        );
        assert_eq!(first.body(), body.as_bytes());
        assert_eq!(
            requests.iter().map(|r| r.status).collect::<Vec<_>>(),
            [200, 200, 429, 503, 422]
        );
        assert_eq!(collector.counted().len(), 2);
    }
}
