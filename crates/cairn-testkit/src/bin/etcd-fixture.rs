//! A real etcd cluster for `scripts/bench-fleet-lock`: starts `members`
//! members on loopback, prints `ETCD_ENDPOINTS=<url,url,...>` once every
//! member is healthy, and keeps the cluster until its standard input closes.
//!
//! Usage: etcd-fixture <members>

use cairn_testkit::EtcdCluster;
use std::io::Read;

fn main() {
    let members: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("usage: etcd-fixture <members>"));
    let cluster = EtcdCluster::start(members);
    println!("ETCD_ENDPOINTS={}", cluster.endpoints().join(","));
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(cluster);
}
