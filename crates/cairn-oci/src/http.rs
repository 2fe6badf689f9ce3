//! The one HTTP layer every outbound request of Cairn goes through: registry
//! calls, token requests, plain URLs (documents, Fedora's files, Cincinnati)
//! and the agent's FleetLock calls.
//!
//! It gives them all the same three things: one client configuration (timeouts,
//! no https-to-http redirects), one retry policy for transient failures, and
//! one size-limited body reader, so that no peer can make Cairn buffer more
//! than the limit named for what it is reading.

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The largest body Cairn reads for each kind of reply.
pub mod limits {
    /// The part of an error reply kept for the message; the rest is never read.
    pub const ERROR_BODY: usize = 4 * 1024;
    /// A token reply, from a realm the registry chooses (real ones are a few KiB).
    pub const TOKEN_REPLY: usize = 64 * 1024;
    /// A manifest or index (registries cap manifests at 4 MiB).
    pub const MANIFEST: usize = 4 * 1024 * 1024;
    /// One page of a tag list.
    pub const TAG_LIST_PAGE: usize = 4 * 1024 * 1024;
    /// An image config blob.
    pub const IMAGE_CONFIG: usize = 4 * 1024 * 1024;
    /// A graph document: 16 MiB, far above 10,000 releases.
    pub const DOCUMENT: usize = 16 * 1024 * 1024;
    /// A signature payload (simple signing JSON) or a detached `.sig`.
    pub const SIGNATURE_PAYLOAD: usize = 64 * 1024;
    /// Fedora's release metadata or a Cincinnati answer.
    pub const METADATA: usize = 64 * 1024 * 1024;
    /// A FleetLock reply (success or `{"kind","value"}` error).
    pub const FLEETLOCK_REPLY: usize = 16 * 1024;
    /// Layers of one signature manifest: each costs a blob request, and real
    /// documents carry one signature per signer.
    pub const SIGNATURE_LAYERS: usize = 32;
}

/// When and how often to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after a 429, a 5xx or a transport error.
    pub retries: u32,
    /// First pause between retries; it doubles each time.
    pub backoff: Duration,
}

impl RetryPolicy {
    /// Never retry: for callers whose own loop already retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        backoff: Duration::ZERO,
    };

    fn pause(&self, attempt: u32) -> Duration {
        self.backoff.saturating_mul(2u32.saturating_pow(attempt))
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is (or announced itself as) larger than the limit.
    #[error("reply larger than {limit} bytes")]
    TooLarge {
        /// The limit for this kind of reply.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("{0}")]
    Transport(String),
}

impl BodyError {
    /// A short, fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "too_large",
            BodyError::Transport(_) => "transport",
        }
    }
}

/// An HTTP client with Cairn's settings and retry policy; cheap to clone.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    retry: RetryPolicy,
    requests: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl Http {
    /// A client whose every request times out after `timeout`.
    pub fn new(timeout: Duration, retry: RetryPolicy) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            // Blob storage may redirect elsewhere: reqwest drops credentials on
            // cross-host redirects, and an https request never follows to http.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let downgrade = attempt
                    .previous()
                    .last()
                    .is_some_and(|p| p.scheme() == "https")
                    && attempt.url().scheme() != "https";
                if downgrade {
                    attempt.error("refusing a redirect from https to plain http")
                } else if attempt.previous().len() > 5 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            .build()?;
        Ok(Http {
            client,
            retry,
            requests: Arc::new(AtomicU64::new(0)),
            writes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// HTTP requests sent so far, retries included.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests sent so far that may change something (any method but GET
    /// and HEAD), retries included.
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Send the request `build` makes, building it again for each retry of a
    /// transient failure (transport error, timeout, 429, 5xx) with exponential
    /// backoff, honouring `Retry-After`. Other statuses come back as they are.
    ///
    /// Only reads (GET, HEAD) are retried. A write may have taken effect
    /// before its answer was lost: a blob upload's `Location` is single-use,
    /// and a POST asked twice starts two uploads. Its caller decides.
    pub async fn send<F>(&self, build: F) -> Result<reqwest::Response, reqwest::Error>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let mut attempt = 0;
        loop {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let request = build(&self.client).build()?;
            let retries = if matches!(
                *request.method(),
                reqwest::Method::GET | reqwest::Method::HEAD
            ) {
                self.retry.retries
            } else {
                self.writes.fetch_add(1, Ordering::Relaxed);
                0
            };
            let error = match self.client.execute(request).await {
                Ok(response) => {
                    let status = response.status();
                    let transient =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !transient || attempt >= retries {
                        return Ok(response);
                    }
                    let pause =
                        retry_after(response.headers()).unwrap_or(self.retry.pause(attempt));
                    tracing::debug!(url = %response.url(), status = status.as_u16(), attempt, "retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                    continue;
                }
                Err(error) => error,
            };
            // A bad URL, a refused redirect or a plain-HTTP peer will not get
            // better by asking again.
            if error.is_builder()
                || error.is_redirect()
                || met_plain_http(&error)
                || attempt >= retries
            {
                return Err(error);
            }
            tracing::debug!(%error, attempt, "retrying after transport error");
            tokio::time::sleep(self.retry.pause(attempt)).await;
            attempt += 1;
        }
    }
}

/// How [`read_body`] treats a body past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse it: the caller needs the whole body.
    Fail,
    /// Keep the first `limit` bytes and stop reading: for error messages.
    Truncate,
}

/// Read a body, never holding more than `limit` bytes: a peer that announces
/// or sends more gets [`BodyError::TooLarge`] (or, with
/// [`Overflow::Truncate`], its first `limit` bytes) without the rest being read.
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    overflow: Overflow,
) -> Result<Bytes, BodyError> {
    let announced = response.content_length().unwrap_or(0);
    if overflow == Overflow::Fail && announced > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    // The announced length is only a hint for the buffer, never trusted beyond the limit.
    let mut body = Vec::with_capacity(announced.min(limit as u64).min(1 << 20) as usize);
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(BodyError::Transport(error_chain(&e))),
        };
        let room = limit - body.len();
        if chunk.len() > room {
            match overflow {
                Overflow::Fail => return Err(BodyError::TooLarge { limit }),
                Overflow::Truncate => {
                    body.extend_from_slice(&chunk[..room]);
                    break;
                }
            }
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// The start of an error reply as text, for a message: at most
/// [`limits::ERROR_BODY`] bytes are read, whatever the peer sends.
pub async fn error_text(response: reqwest::Response, max_chars: usize) -> String {
    match read_body(response, limits::ERROR_BODY, Overflow::Truncate).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .chars()
            .take(max_chars)
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "could not read an error reply");
            String::new()
        }
    }
}

/// Whether a TLS handshake failed because the peer answered in plain HTTP:
/// rustls then reads the first bytes of `HTTP/1.1 400` as a record header
/// whose content type is invalid.
pub fn met_plain_http(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        // An `io::Error`'s `source()` skips the error it wraps, and the TLS
        // stack nests one `io::Error` in another, so unwrap them by hand.
        let mut inner = current;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        if matches!(
            inner.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            ))
        ) {
            return true;
        }
        cause = current.source();
    }
    false
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // A server asking for minutes should not stall a scan for that long.
    Some(Duration::from_secs(seconds.min(30)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[tokio::test]
    async fn a_plain_http_peer_is_recognised_and_not_retried() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut hello = [0u8; 512];
                let _ = socket.read(&mut hello).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        let retry = RetryPolicy {
            retries: 3,
            backoff: Duration::from_millis(50),
        };
        let http = Http::new(Duration::from_secs(5), retry).expect("client");
        let error = http
            .send(|c| c.get(format!("https://{address}/v2/")))
            .await
            .expect_err("TLS to a plain HTTP peer fails");
        assert!(met_plain_http(&error), "{}", error_chain(&error));
        assert_eq!(http.request_count(), 1, "asking again cannot help");
    }

    #[test]
    fn retry_after_is_capped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(30)));
    }

    #[test]
    fn backoff_doubles_without_overflowing() {
        let policy = RetryPolicy {
            retries: 3,
            backoff: Duration::from_millis(200),
        };
        assert_eq!(policy.pause(0), Duration::from_millis(200));
        assert_eq!(policy.pause(2), Duration::from_millis(800));
        assert!(policy.pause(40) >= Duration::from_secs(1));
    }
}
