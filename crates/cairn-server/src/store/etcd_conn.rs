//! What the lock and report stores' etcd backends share: one client of the
//! configured members, its error messages, and retries of etcd errors.

use super::StoreError;
use etcd_client::{
    Client, ConnectOptions, GetOptions, GetResponse, KeyValue, TxnOpResponse, TxnResponse,
};
use std::time::{Duration, Instant};

/// How long one call keeps retrying etcd errors (a member down, an election)
/// before it gives up; under the server's 2 s answer deadline.
const RETRY_FOR: Duration = Duration::from_millis(1500);

/// The pause between two tries after an etcd error.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A client of the configured members; cheap to clone.
#[derive(Clone)]
pub(super) struct Etcd {
    pub(super) client: Client,
    /// The members' URLs joined, as messages name them.
    pub(super) endpoints: String,
}

impl Etcd {
    /// A client of these members, as every etcd store of the server
    /// connects. Connecting is lazy: a cluster that is down now makes calls
    /// fail, not the start.
    pub(super) async fn connect(endpoints: &[String]) -> Result<Etcd, StoreError> {
        let shown = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(2))
            // A member cut off from the others answers nothing rather than
            // stale reads or writes that cannot commit.
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Open {
                path: format!("etcd {shown}"),
                message: e.to_string(),
            })?;
        Ok(Etcd {
            client,
            endpoints: shown,
        })
    }

    /// A failed etcd call, naming the members.
    pub(super) fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            message: e.to_string(),
        }
    }

    /// Retry `call` on etcd errors for up to [`RETRY_FOR`]: a request that
    /// went to a member just killed, or arrived during an election, goes to
    /// another one or waits for the new leader.
    pub(super) async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        loop {
            match call(self.client.clone()).await {
                Ok(value) => return Ok(value),
                Err(error) if started.elapsed() < RETRY_FOR => {
                    tracing::debug!(%error, "etcd call failed; trying again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) => return Err(self.error(error)),
            }
        }
    }

    /// Every key under `prefix`, retried as [`Etcd::retrying`] does.
    pub(super) async fn get_prefix(&self, prefix: &str) -> Result<GetResponse, StoreError> {
        self.retrying(|mut client| {
            let prefix = prefix.to_string();
            async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await
    }

    /// Whether the cluster answers a linearizable read (it needs a leader
    /// and a quorum, as a write does) of the `ready` key under `prefix`.
    pub(super) async fn check(&self, prefix: &str) -> Result<(), StoreError> {
        let key = format!("{prefix}ready");
        self.retrying(|mut client| {
            let key = key.clone();
            async move { client.get(key, None).await }
        })
        .await
        .map(|_| ())
    }
}

/// The keys each get of a transaction read, in order (an empty list for
/// each operation that is not a get).
pub(super) fn txn_gets(response: TxnResponse) -> impl Iterator<Item = Vec<KeyValue>> {
    response
        .op_responses()
        .into_iter()
        .map(|answer| match answer {
            TxnOpResponse::Get(mut get) => get.take_kvs(),
            _ => Vec::new(),
        })
}
