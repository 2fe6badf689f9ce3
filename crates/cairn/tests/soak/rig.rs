//! The soak's fleet and everything around it: the registry and its fault
//! proxy, `cairn serve`, the publisher, the stand-in hosts and their agents,
//! the injectors that break them, and the watchers that judge them.

use crate::common::agent::Node;
use crate::common::publish::Publish;
use crate::judge::{self, EventCursor};
use crate::proxy::{FaultProxy, Mode};
use cairn_graph::GraphDocument;
use cairn_graph::halts::HaltList;
use cairn_testkit::host::{FakeHost, modify_state};
use cairn_testkit::{Auth, TestRegistry, write_release};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Hosts that may reboot at once: the lock group's slots.
pub const SLOTS: usize = 2;
/// How often each agent checks.
const CHECK_INTERVAL_MS: u64 = 500;
/// Checks a host may take, after the faults stop, to reach what it is offered.
pub const CONVERGE_WITHIN_CHECKS: u64 = 400;
const DOCUMENT_TAG: &str = "cairn-graph-stable";
const EXPIRED_TAG: &str = "soak-expired-document";
const HALT_TAG: &str = "cairn-halts-stable";
const REPORT_TOKEN: &str = "soak-report-token-0123456789abcdef";
const ADMIN_TOKEN: &str = "soak-admin-token-0123456789abcdef";
/// The share of boots into a good release that fail anyway.
const STRAY_FAILURE: f64 = 0.05;

/// splitmix64: small, seedable, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }
}

/// A seed for a run that was given none.
pub fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (nanos as u64 ^ u64::from(std::process::id())) % 1_000_000_000
}

fn text(path: impl AsRef<Path>) -> String {
    path.as_ref().display().to_string()
}

fn cairn(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env("XDG_CACHE_HOME", "/nonexistent/cairn-soak-cache")
        .stdin(Stdio::null())
        .output()
        .expect("cairn runs")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// One stand-in host and its agent.
pub struct Host {
    pub name: String,
    /// Driven through rpm-ostree rather than bootc.
    rpm_ostree: bool,
    pub node: Node,
    pub wariness: f64,
    agent: Mutex<Option<Child>>,
    log: PathBuf,
    /// Taken by whoever kills or starts the agent, or reboots the host.
    power: Mutex<()>,
    /// Between the harness seeing the reboot command and the new boot.
    rebooting: AtomicBool,
    /// The reboot command was alive when the shutdown ended: the host goes
    /// down, from then until its agent runs again.
    reboot_committed: AtomicBool,
    /// Held: the length of the event log when `cairn hold` returned.
    held_at: Mutex<Option<usize>>,
    cursor: Mutex<EventCursor>,
}

impl Host {
    fn socket(&self) -> String {
        format!("{}/agent.sock", self.node.state)
    }

    fn start_agent(&self, proxy: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let child = self
            .node
            .command(&["agent"])
            .insecure_registry(proxy)
            .args(["--socket", &self.socket(), "--no-user-check"])
            .args(["--check-interval-ms", &CHECK_INTERVAL_MS.to_string()])
            .command()
            // Its own process group, killed whole: as systemd stops a
            // crashed unit's processes, a host tool it ran dies with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the agent starts");
        *lock(&self.agent) = Some(child);
    }

    /// SIGKILL to the agent and whatever it runs, as a crash under systemd
    /// or a power cut does.
    fn kill_agent(&self) {
        if let Some(mut child) = lock(&self.agent).take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The agent's exit status, if it exited when nobody killed it.
    fn exited_by_itself(&self) -> Option<std::process::ExitStatus> {
        let mut agent = lock(&self.agent);
        let status = agent.as_mut()?.try_wait().ok()??;
        *agent = None;
        Some(status)
    }

    fn agent_running(&self) -> bool {
        lock(&self.agent).is_some()
    }

    fn agent_state(&self) -> Option<cairn_agent::store::AgentState> {
        let bytes = std::fs::read(Path::new(&self.node.state).join("state.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Checks begun: one `bootc status` each.
    fn checks(&self) -> u64 {
        self.node
            .host
            .state()
            .calls
            .iter()
            .filter(|c| c.starts_with("status"))
            .count() as u64
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `cairn serve`, stopped and started on one port.
struct Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["serve", "--listen", &listen, "--config"])
            .arg(self.dir.join("server.toml"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cairn serve starts");
        let stderr = child.stderr.take().expect("piped");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))
            .expect("serve log");
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if let Some(at) = line.find("address=") {
                    let address: String = line[at + "address=".len()..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = found.send(address);
                }
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "cairn serve did not start; see {}/serve.log",
                    self.dir.display()
                )
            });
        self.port = address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Everything the soak runs, and what it counted.
pub struct Rig {
    _dir: Option<tempfile::TempDir>,
    dir: PathBuf,
    pub registry_host: String,
    registry: TestRegistry,
    pub proxy: FaultProxy,
    /// The repository as everyone but the image writer names it (through the proxy).
    repo: String,
    server: Mutex<Server>,
    hosts: Vec<Host>,
    runtime: tokio::runtime::Handle,
    /// Versions published, oldest first, with their amd64 digests.
    releases: Mutex<Vec<(String, String)>>,
    /// Releases that fail to boot on every host.
    bad: Mutex<BTreeSet<String>>,
    /// Releases made barriers, and releases made dead-ends or halted.
    barriers: Mutex<BTreeSet<String>>,
    blocked: Mutex<BTreeSet<String>>,
    /// Every document published, by the digest of its bytes.
    documents: Mutex<HashMap<String, GraphDocument>>,
    pub faults_over: AtomicBool,
    pub all_over: AtomicBool,
    /// Set when the rig shuts down: no agent starts any more.
    stopping: AtomicBool,
    /// The expired document's bytes' digest: no agent may ever accept it.
    expired_digest: Mutex<String>,
    faults: Mutex<BTreeMap<String, u64>>,
    checks: Mutex<BTreeMap<String, u64>>,
    events: Mutex<BTreeMap<String, u64>>,
    violations: Mutex<Vec<String>>,
    most_rebooting: AtomicU64,
    seed: u64,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str, by: u64) {
    *lock(map).entry(key.to_string()).or_default() += by;
}

impl Rig {
    pub async fn set_up(seed: u64, count: usize) -> Rig {
        let dir = tempfile::Builder::new()
            .prefix("cairn-soak-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().to_path_buf();
        let d = |name: &str| text(path.join(name));
        let registry = TestRegistry::start(Auth::None).await;
        let proxy = FaultProxy::start(&registry.host, "acme/os", DOCUMENT_TAG, EXPIRED_TAG).await;
        let repo = format!("{}/acme/os", proxy.host);
        let store = registry.store("acme/os");
        let mut releases = Vec::new();
        for (i, version) in ["1.0", "1.1", "1.2"].iter().enumerate() {
            let created = format!("2026-0{}-01T00:00:00Z", i + 1);
            let tags: Vec<&str> = if i == 2 {
                vec![version, "stable"]
            } else {
                vec![version]
            };
            let (_, written) = write_release(&store, version, &created, &tags).await;
            releases.push((version.to_string(), written[0].manifest.clone()));
        }
        for key in ["team", "halt"] {
            crate::common::ok(&["document", "keygen", "--output", &d(key)]);
        }
        std::fs::write(path.join("report.token"), format!("{REPORT_TOKEN}\n")).expect("token");
        std::fs::write(path.join("admin.token"), format!("{ADMIN_TOKEN}\n")).expect("token");
        let server_dir = path.join("server");
        std::fs::create_dir_all(&server_dir).expect("mkdir");
        std::fs::write(
            server_dir.join("server.toml"),
            format!(
                "refresh_interval_seconds = 1\ninsecure_registries = [\"{proxy}\"]\n\
                 [[stream]]\nname = \"stable\"\n\
                 document = {{ location = \"{repo}:{DOCUMENT_TAG}\", keys = [\"{team}\"] }}\n\
                 [fleet_lock]\ndatabase = \"locks.sqlite\"\nallowed_networks = [\"127.0.0.0/8\"]\n\
                 default_group = {{ slots = {SLOTS}, lease_seconds = 600 }}\n\
                 [reports]\ndatabase = \"reports.sqlite\"\nexempt_networks = [\"127.0.0.0/8\"]\n\
                 [halts]\nhalt_keys = [\"{halt_pub}\"]\ndatabase = \"halts.sqlite\"\n\
                 [guard]\nhalt_key = \"{halt_key}\"\ncheck_interval_seconds = 1\n\
                 [[token]]\nfile = \"{report}\"\nscopes = [\"report\"]\n\
                 [[token]]\nfile = \"{admin}\"\nscopes = [\"lock-admin\"]\n",
                proxy = proxy.host,
                team = d("team.pub"),
                halt_pub = d("halt.pub"),
                halt_key = d("halt.key"),
                report = d("report.token"),
                admin = d("admin.token"),
            ),
        )
        .expect("server config");
        let rig = Rig {
            dir: path.clone(),
            // CAIRN_SOAK_KEEP keeps the logs, states and configurations.
            _dir: match std::env::var_os("CAIRN_SOAK_KEEP") {
                Some(_) => {
                    println!("soak: keeping {}", path.display());
                    let _ = dir.keep();
                    None
                }
                None => Some(dir),
            },
            registry_host: registry.host.clone(),
            registry,
            repo,
            server: Mutex::new(Server {
                child: None,
                port: free_port_below_ephemeral(seed),
                dir: server_dir,
            }),
            hosts: Vec::new(),
            runtime: tokio::runtime::Handle::current(),
            releases: Mutex::new(releases),
            bad: Mutex::new(BTreeSet::new()),
            barriers: Mutex::new(BTreeSet::new()),
            blocked: Mutex::new(BTreeSet::new()),
            documents: Mutex::new(HashMap::new()),
            faults_over: AtomicBool::new(false),
            all_over: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            expired_digest: Mutex::new(String::new()),
            faults: Mutex::new(BTreeMap::new()),
            checks: Mutex::new(BTreeMap::new()),
            events: Mutex::new(BTreeMap::new()),
            violations: Mutex::new(Vec::new()),
            most_rebooting: AtomicU64::new(0),
            seed,
            proxy,
        };
        // A document that expires at once, kept under a tag of its own for
        // the proxy to serve in place of the real one.
        rig.policy(&["rollout", "start", "1.2", "--over", "40s", "--at", &now()]);
        rig.publish_until_done(&["--expires-in", "1s"]).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let document = store
            .get_manifest(DOCUMENT_TAG)
            .await
            .expect("the document");
        store
            .put_manifest(
                document.bytes.clone(),
                &document.media_type,
                Some(EXPIRED_TAG),
            )
            .await
            .expect("keep the expired document");
        let expired = cairn_oci::document::fetch(&store, EXPIRED_TAG)
            .await
            .expect("the expired document");
        let expired = cairn_oci::digest::sha256_digest(&expired.bytes);
        lock(&rig.documents).remove(&expired);
        *lock(&rig.expired_digest) = expired;
        rig.publish_until_done(&[]).await;
        lock(&rig.server).start();
        let mut rig = rig;
        let mut rng = Rng::new(seed);
        let releases = lock(&rig.releases).clone();
        for i in 0..count {
            let name = format!("host-{i:02}");
            let base = rig.dir.join(&name);
            let (version, digest) = &releases[rng.below(2)];
            // Every third host is driven through rpm-ostree.
            let rpm_ostree = i % 3 == 2;
            let image = format!("{}:stable", rig.repo);
            let insecure = std::slice::from_ref(&rig.proxy.host);
            let host = if rpm_ostree {
                FakeHost::rpm_ostree(
                    &base.join("host"),
                    &image,
                    (digest, version),
                    insecure,
                    true,
                )
            } else {
                FakeHost::new(
                    &base.join("host"),
                    "1.17.0",
                    &image,
                    (digest, version),
                    insecure,
                    true,
                )
            };
            let wariness = (i as f64 + 0.5) / count as f64;
            let node = Node::configured(host, &base, &rig.agent_config(wariness));
            std::fs::write(
                Path::new(&node.root).join("etc/machine-id"),
                format!("{:032x}\n", rng.next() as u128 * 7919 + i as u128),
            )
            .expect("machine-id");
            rig.hosts.push(Host {
                log: base.join("agent.log"),
                rpm_ostree,
                name,
                node,
                wariness,
                agent: Mutex::new(None),
                power: Mutex::new(()),
                rebooting: AtomicBool::new(false),
                reboot_committed: AtomicBool::new(false),
                held_at: Mutex::new(None),
                cursor: Mutex::new(EventCursor::default()),
            });
        }
        for host in &rig.hosts {
            rig.start(host);
        }
        rig
    }

    /// Start a host's agent, unless the rig is shutting down.
    fn start(&self, host: &Host) {
        if !self.stopping.load(Ordering::SeqCst) {
            host.start_agent(&self.proxy.host);
        }
    }

    pub fn server_url(&self) -> String {
        format!("http://127.0.0.1:{}", lock(&self.server).port)
    }

    fn agent_config(&self, wariness: f64) -> String {
        let d = |name: &str| text(self.dir.join(name));
        let url = format!("http://127.0.0.1:{}", lock(&self.server).port);
        format!(
            "[updates]\nkeys = [\"{team}\"]\nhalt_keys = [\"{halt}\"]\n\
             [identity]\nrollout_wariness = {wariness}\n\
             [strategy.fleet_lock]\nbase_url = \"{url}\"\ngroup = \"default\"\n\
             [reports]\nurl = \"{url}\"\ntoken_file = \"{token}\"\nmax_delay_seconds = 2\n",
            team = d("team.pub"),
            halt = d("halt.pub"),
            token = d("report.token"),
        )
    }

    fn violation(&self, what: String) {
        println!("soak: VIOLATION: {what}");
        lock(&self.violations).push(what);
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    fn fault(&self, what: &str) {
        bump(&self.faults, what, 1);
    }

    fn policy(&self, edit: &[&str]) {
        let mut args = strings(&["policy", "--policy"]);
        args.push(text(self.dir.join("updates.json")));
        args.extend(strings(&["--stream", "stable"]));
        args.extend(strings(edit));
        let out = cairn(&args);
        assert!(
            out.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `cairn publish`, again until it succeeds: the registry fails while
    /// faults are on. Every document that reached the registry is kept for judging.
    async fn publish_until_done(&self, extra: &[&str]) {
        let d = |name: &str| self.dir.join(name);
        let publish = Publish::signed(&self.repo, d("team.key"))
            .policy(d("updates.json"))
            .insecure_registry(&self.proxy.host)
            .cache(d("cache.json"))
            .args(["--halt-key", &text(d("halt.pub"))])
            .args(["--halt-list", &format!("{}/acme/os-halts", self.proxy.host)])
            .args(extra);
        for attempt in 1..=60 {
            let out = publish.output();
            self.keep_published_document().await;
            if out.status.success() {
                bump(&self.events, "documents published", 1);
                return;
            }
            bump(&self.events, "publish attempts failed (registry faults)", 1);
            if attempt == 60 {
                panic!(
                    "cairn publish failed 60 times: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn keep_published_document(&self) {
        let store = self.registry.store("acme/os");
        if let Ok(fetched) = cairn_oci::document::fetch(&store, DOCUMENT_TAG).await {
            lock(&self.documents).insert(
                cairn_oci::digest::sha256_digest(&fetched.bytes),
                fetched.document,
            );
        }
    }

    async fn halt_list(&self) -> Option<HaltList> {
        let store = self.registry.store("acme/os-halts");
        cairn_oci::halts::fetch(&store, HALT_TAG)
            .await
            .ok()
            .map(|f| f.list)
    }

    async fn current_document(&self) -> Option<GraphDocument> {
        let store = self.registry.store("acme/os");
        cairn_oci::document::fetch(&store, DOCUMENT_TAG)
            .await
            .ok()
            .map(|f| f.document)
    }

    // ---- the watchers -------------------------------------------------

    /// Reboot every host whose agent ran the reboot command, each in a
    /// thread of its own (so reboots overlap as they would).
    pub fn watch_reboots(self: std::sync::Arc<Self>) {
        let mut count = 0u64;
        while !self.all_over.load(Ordering::SeqCst) {
            for at in 0..self.hosts.len() {
                let host = &self.hosts[at];
                if host.rebooting.load(Ordering::SeqCst) {
                    continue;
                }
                if host.node.host.state().apply_pid.is_some() {
                    host.rebooting.store(true, Ordering::SeqCst);
                    count += 1;
                    let rig = self.clone();
                    let rng = Rng::new(self.seed ^ count.wrapping_mul(0x5851_f42d));
                    std::thread::spawn(move || rig.reboot(at, rng));
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn reboot(&self, at: usize, mut rng: Rng) {
        let host = &self.hosts[at];
        let state = host.node.host.state();
        let booted = state.booted.map(|b| b.digest).unwrap_or_default();
        let target = state.staged.map(|s| s.digest);
        if let Some(target) = &target {
            self.judge_apply(host, &booted, target);
        }
        // The shutdown takes a while: other hosts may reach theirs meanwhile.
        std::thread::sleep(rng.millis(200, 1500));
        let _power = lock(&host.power);
        let apply = host.node.host.state().apply_pid;
        if !apply.is_some_and(process_alive) {
            // The agent was killed, and its reboot command with it: no reboot.
            modify_state(&host.node.host.dir, |s| s.apply_pid = None);
            bump(&self.events, "reboot commands killed with their agent", 1);
            host.rebooting.store(false, Ordering::SeqCst);
            return;
        }
        host.reboot_committed.store(true, Ordering::SeqCst);
        host.kill_agent();
        let version = target.as_deref().and_then(|t| self.version_of(t));
        let bad = version
            .as_ref()
            .is_some_and(|v| lock(&self.bad).contains(v));
        let healthy = !bad && !rng.chance(STRAY_FAILURE);
        host.node.host.reboot(healthy);
        bump(
            &self.events,
            if healthy {
                "healthy reboots"
            } else {
                "failed boots (rolled back)"
            },
            1,
        );
        if !healthy {
            self.fault(if bad {
                "boots failed (a bad release)"
            } else {
                "boots failed (at random)"
            });
        }
        std::thread::sleep(rng.millis(100, 500));
        self.start(host);
        host.reboot_committed.store(false, Ordering::SeqCst);
        host.rebooting.store(false, Ordering::SeqCst);
    }

    fn version_of(&self, digest: &str) -> Option<String> {
        lock(&self.releases)
            .iter()
            .find(|(_, d)| d == digest)
            .map(|(v, _)| v.clone())
    }

    fn judge_apply(&self, host: &Host, booted: &str, target: &str) {
        bump(
            &self.checks,
            "reboots judged against the agent's verified document and halt list",
            1,
        );
        let Some(state) = host.agent_state() else {
            return self.violation(format!("{}: rebooting with no agent state", host.name));
        };
        if state.held && !self.faults_over.load(Ordering::SeqCst) && lock(&host.held_at).is_some() {
            self.violation(format!("{}: rebooted into {target} while held", host.name));
        }
        let Some((sequence, digest)) = state.last_document else {
            return self.violation(format!("{}: rebooted with no verified document", host.name));
        };
        let document = lock(&self.documents).get(&digest).cloned();
        let document = match document {
            Some(document) => document,
            None => {
                self.runtime.block_on(self.keep_published_document());
                match lock(&self.documents).get(&digest).cloned() {
                    Some(document) => document,
                    None => {
                        return self.violation(format!(
                            "{}: rebooted under a document (sequence {sequence}, {digest}) never published",
                            host.name
                        ));
                    }
                }
            }
        };
        let halts = state.halt_lists.get("stable");
        for wrong in judge::judge_apply(&document, halts, booted, target) {
            self.violation(format!("{}: {wrong}", host.name));
        }
    }

    /// The continuous checks: reboots at once against the slots, holds,
    /// and each host's event log.
    pub fn monitor(self: std::sync::Arc<Self>) {
        let mut round = 0u64;
        while !self.all_over.load(Ordering::SeqCst) {
            round += 1;
            let mut rebooting = Vec::new();
            for host in &self.hosts {
                if let Some(status) = host.exited_by_itself() {
                    self.violation(format!(
                        "{}: the agent exited by itself ({status})",
                        host.name
                    ));
                    self.start(host);
                }
                if round.is_multiple_of(10) {
                    self.check_accepted_document(host);
                }
                let state = host.node.host.state();
                // A reboot command killed with its agent leaves its PID in
                // the stand-in's state until the reboot thread clears it; the
                // restarted agent rightly gives the slot back meanwhile.
                if host.reboot_committed.load(Ordering::SeqCst) {
                    rebooting.push(format!("{} (going down)", host.name));
                } else if let Some(pid) = state.apply_pid {
                    if process_alive(pid) {
                        rebooting.push(format!("{} (reboot command {pid} running)", host.name));
                    } else {
                        bump(
                            &self.events,
                            "checks that saw a killed reboot command not yet cleared",
                            1,
                        );
                    }
                }
                let (judged, wrong) =
                    judge::judge_events(&mut lock(&host.cursor), &state.events, &host.name);
                bump(&self.checks, "host events judged (stages, boots)", judged);
                for wrong in wrong {
                    self.violation(wrong);
                }
                // Held across the check: an unhold clears it first.
                let mut held_at = lock(&host.held_at);
                if let Some(at) = *held_at {
                    bump(&self.checks, "holds checked", 1);
                    let agent_holds = host.agent_state().is_some_and(|s| s.held);
                    if !agent_holds {
                        self.violation(format!("{}: a hold was lost", host.name));
                    }
                    if let Some(staged) = state.events[at.min(state.events.len())..]
                        .iter()
                        .find(|e| e.starts_with("staged"))
                    {
                        self.violation(format!("{}: {staged} while held", host.name));
                        *held_at = Some(state.events.len());
                    }
                }
            }
            bump(&self.checks, "reboots at once compared with the slots", 1);
            self.most_rebooting
                .fetch_max(rebooting.len() as u64, Ordering::SeqCst);
            if rebooting.len() > SLOTS {
                self.violation(format!(
                    "{} hosts rebooting at once, with {SLOTS} slots: {}",
                    rebooting.len(),
                    rebooting.join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The document an agent last accepted must be one the release team
    /// published, never the expired one nor a forgery.
    fn check_accepted_document(&self, host: &Host) {
        let Some((sequence, digest)) = host.agent_state().and_then(|s| s.last_document) else {
            return;
        };
        bump(
            &self.checks,
            "documents agents accepted, checked as published",
            1,
        );
        if digest == *lock(&self.expired_digest) {
            return self.violation(format!("{}: accepted the expired document", host.name));
        }
        if lock(&self.documents).contains_key(&digest) {
            return;
        }
        self.runtime.block_on(self.keep_published_document());
        if !lock(&self.documents).contains_key(&digest) {
            self.violation(format!(
                "{}: accepted a document never published (sequence {sequence}, {digest})",
                host.name
            ));
        }
    }

    /// As an operator would: look at the lock groups, acknowledge a halted one.
    pub fn acknowledge_halted_groups(self: std::sync::Arc<Self>) {
        while !self.all_over.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1000));
            let server = self.server_url();
            let token = text(self.dir.join("admin.token"));
            let status = cairn(&strings(&[
                "lock",
                "status",
                "--json",
                "--server",
                &server,
                "--token-file",
                &token,
            ]));
            if !status.status.success() {
                continue;
            }
            let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&status.stdout) else {
                continue;
            };
            for group in answer["groups"].as_array().into_iter().flatten() {
                let holders = group["holders"].as_array().map_or(0, Vec::len);
                bump(&self.checks, "lock groups checked for slots held", 1);
                if holders > SLOTS {
                    self.violation(format!("the lock server lists {holders} holders"));
                }
                if group["halt"].is_object()
                    && let Some(name) = group["group"].as_str()
                {
                    let ack = cairn(&strings(&[
                        "lock",
                        "ack",
                        name,
                        "--server",
                        &server,
                        "--token-file",
                        &token,
                    ]));
                    if ack.status.success() {
                        bump(&self.events, "halted lock groups acknowledged", 1);
                    }
                }
            }
        }
    }

    // ---- the injectors ------------------------------------------------

    /// Hosts and the server: agents killed, bootc failing or hanging, the
    /// server restarted or stopped, holds and unholds.
    pub fn host_faults(self: std::sync::Arc<Self>, mut rng: Rng) {
        while !self.faults_over.load(Ordering::SeqCst) {
            std::thread::sleep(rng.millis(500, 2500));
            let at = rng.below(self.hosts.len());
            let host = &self.hosts[at];
            match rng.below(100) {
                0..30 => {
                    let _power = lock(&host.power);
                    if host.rebooting.load(Ordering::SeqCst) || !host.agent_running() {
                        continue;
                    }
                    host.kill_agent();
                    self.fault("agents SIGKILLed");
                    std::thread::sleep(rng.millis(0, 1500));
                    self.start(host);
                }
                30..45 => {
                    let (tool, command) = if host.rpm_ostree {
                        (
                            "rpm-ostree",
                            ["deploy", "status", "finalize-deployment"][rng.below(3)],
                        )
                    } else {
                        ("bootc", ["switch", "status", "upgrade"][rng.below(3)])
                    };
                    host.node
                        .host
                        .fail(command, "injected: the host tool failed");
                    self.fault(&format!("{tool} {command} failing"));
                    let wait = rng.millis(1000, 5000);
                    let dir = host.node.host.dir.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(wait);
                        modify_state(&dir, |s| s.fail = None);
                    });
                }
                45..58 => {
                    let (tool, command) = if host.rpm_ostree {
                        ("rpm-ostree", ["deploy", "status"][rng.below(2)])
                    } else {
                        ("bootc", ["switch", "status"][rng.below(2)])
                    };
                    host.node.host.pause_before(command);
                    self.fault(&format!("{tool} {command} hanging"));
                    let wait = rng.millis(1000, 15000);
                    let dir = host.node.host.dir.clone();
                    let program = host.node.host.program.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(wait);
                        FakeHost { program, dir }.resume();
                    });
                }
                58..66 => {
                    let mut server = lock(&self.server);
                    server.stop();
                    server.start();
                    self.fault("lock server and collector restarted");
                }
                66..72 => {
                    let mut server = lock(&self.server);
                    server.stop();
                    self.fault("lock server and collector stopped");
                    std::thread::sleep(rng.millis(2000, 8000));
                    server.start();
                }
                _ => {
                    let held = *lock(&host.held_at);
                    if let Some(since) = held {
                        // No longer judged as held from before the command runs.
                        *lock(&host.held_at) = None;
                        if self.operator(host, "unhold") {
                            self.fault("cairn unhold");
                        } else if host.agent_state().is_some_and(|s| s.held) {
                            *lock(&host.held_at) = Some(since);
                        }
                    } else if self.operator(host, "hold") {
                        let events = host.node.host.state().events.len();
                        *lock(&host.held_at) = Some(events);
                        self.fault("cairn hold");
                    }
                }
            }
        }
    }

    /// `cairn hold` or `unhold` on a host, as its operator runs it.
    fn operator(&self, host: &Host, verb: &str) -> bool {
        let out = cairn(&strings(&[
            verb,
            "--state-dir",
            &host.node.state,
            "--socket",
            &host.socket(),
        ]));
        if !out.status.success() {
            bump(&self.events, &format!("cairn {verb} refused"), 1);
            println!(
                "soak: cairn {verb} on {}: {}",
                host.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        out.status.success()
    }

    /// The registry and the release team: registry faults, and new
    /// releases, barriers, dead-ends, rollouts and halts published.
    pub fn registry_faults(self: std::sync::Arc<Self>, mut rng: Rng) {
        let mut next_minor = 3;
        while !self.faults_over.load(Ordering::SeqCst) {
            std::thread::sleep(rng.millis(300, 1500));
            match rng.below(100) {
                0..35 => {
                    let mode =
                        [Mode::Fail5xx, Mode::Hang, Mode::Tamper, Mode::Expired][rng.below(4)];
                    self.proxy.set(mode);
                    self.fault(mode.name());
                    std::thread::sleep(rng.millis(1000, 4000));
                    self.proxy.set(Mode::Normal);
                }
                35..60 => {
                    let version = format!("1.{next_minor}");
                    next_minor += 1;
                    let bad = rng.chance(0.4);
                    self.runtime.block_on(self.add_release(&version));
                    if bad {
                        lock(&self.bad).insert(version.clone());
                    }
                    let what = if bad {
                        "releases published (failing to boot)"
                    } else {
                        "releases published"
                    };
                    if rng.chance(0.5) {
                        self.publish_rollout(&version, what);
                    } else {
                        self.publish_change(&[], what);
                    }
                }
                60..70 => {
                    let Some(version) = self.pick_release(&mut rng, 1, Pick::Barrier) else {
                        continue;
                    };
                    self.publish_change(
                        &["barrier", "add", &version, "--reason", "soak"],
                        "barriers published",
                    );
                }
                70..78 => {
                    let Some(version) = self.pick_release(&mut rng, 1, Pick::Block) else {
                        continue;
                    };
                    let reason = "https://example.org/soak";
                    self.publish_change(
                        &["deadend", "add", &version, "--reason", reason],
                        "dead-ends published",
                    );
                }
                78..90 => {
                    let Some(version) = self.pick_release(&mut rng, 1, Pick::Any) else {
                        continue;
                    };
                    self.publish_rollout(&version, "rollouts published");
                }
                _ => {
                    let Some(version) = self.pick_release(&mut rng, 2, Pick::Block) else {
                        continue;
                    };
                    if self.halt_by_hand(&version) {
                        self.fault("halts published by hand");
                    }
                }
            }
        }
    }

    /// Edit the policy (unless `edit` is empty), publish, and count it.
    fn publish_change(&self, edit: &[&str], what: &str) {
        if !edit.is_empty() {
            self.policy(edit);
        }
        self.runtime.block_on(self.publish_until_done(&[]));
        self.fault(what);
    }

    /// Roll `version` out over 30 seconds from now, publish, and count it.
    fn publish_rollout(&self, version: &str, what: &str) {
        let now = now();
        let edit = ["rollout", "start", version, "--over", "30s", "--at", &now];
        self.publish_change(&edit, what);
    }

    /// One of the four newest releases, never among the `skip_oldest`
    /// first (every host must have somewhere to go). A barrier goes only on
    /// a release every host can take (one that boots, not a dead-end, not
    /// halted), and a dead-end or halt never on a barrier: otherwise the
    /// fleet stops at the first such mark for the rest of the run, which is
    /// right, but leaves little to watch.
    fn pick_release(&self, rng: &mut Rng, skip_oldest: usize, pick: Pick) -> Option<String> {
        let version = {
            let releases = lock(&self.releases);
            let bad = lock(&self.bad);
            let barriers = lock(&self.barriers);
            let blocked = lock(&self.blocked);
            let allowed = |v: &String| match pick {
                Pick::Any => true,
                Pick::Barrier => !bad.contains(v) && !blocked.contains(v),
                Pick::Block => !barriers.contains(v),
            };
            let newest: Vec<&String> = releases.iter().skip(skip_oldest).map(|(v, _)| v).collect();
            let recent: Vec<&String> = newest[newest.len().saturating_sub(4)..]
                .iter()
                .copied()
                .filter(|v| allowed(v))
                .collect();
            (!recent.is_empty()).then(|| recent[rng.below(recent.len())].clone())?
        };
        // Marked once the guards above are gone.
        match pick {
            Pick::Any => {}
            Pick::Barrier => drop(lock(&self.barriers).insert(version.clone())),
            Pick::Block => drop(lock(&self.blocked).insert(version.clone())),
        }
        Some(version)
    }

    async fn add_release(&self, version: &str) {
        let store = self.registry.store("acme/os");
        let minor: u32 = version
            .rsplit('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or_default();
        let created = "2026-01-01T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .expect("a time")
            // A month a release, after the first three (January to March):
            // rpm-ostree refuses an image older than the booted one.
            + jiff::SignedDuration::from_hours(24 * 31 * i64::from(minor));
        let (_, written) =
            write_release(&store, version, &created.to_string(), &[version, "stable"]).await;
        lock(&self.releases).push((version.to_string(), written[0].manifest.clone()));
    }

    fn halt_by_hand(&self, version: &str) -> bool {
        let d = |name: &str| text(self.dir.join(name));
        let mut args = strings(&["halt", "add", version, "--halt-list"]);
        args.push(format!("{}/acme/os-halts:{HALT_TAG}", self.proxy.host));
        args.extend(strings(&[
            "--key",
            &d("halt.key"),
            "--trust-key",
            &d("team.pub"),
        ]));
        args.extend(strings(&[
            "--document",
            &format!("{}:{DOCUMENT_TAG}", self.repo),
        ]));
        args.extend(strings(&[
            "--document-key",
            &d("team.pub"),
            "--who",
            "soak",
        ]));
        args.extend(strings(&["--reason", "halted by the soak's operator"]));
        args.extend(strings(&["--insecure-registry", &self.proxy.host]));
        let out = cairn(&args);
        if !out.status.success() {
            bump(&self.events, "halts by hand refused", 1);
            println!(
                "soak: cairn halt add {version}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        out.status.success()
    }

    // ---- the end --------------------------------------------------------

    /// Clear every fault, then wait until every host is on what it is
    /// offered; returns, per host, the checks it took.
    pub fn clear_faults_and_converge(&self) -> Vec<(String, Option<u64>)> {
        self.proxy.set(Mode::Normal);
        {
            let mut server = lock(&self.server);
            if server.child.is_none() {
                server.start();
            }
        }
        let mut baseline = Vec::new();
        for host in &self.hosts {
            modify_state(&host.node.host.dir, |s| s.fail = None);
            host.node.host.resume();
            lock(&host.held_at).take();
            // Until it takes: the agent may be down for a reboot when asked.
            for _ in 0..60 {
                if !host.agent_state().is_some_and(|s| s.held) || self.operator(host, "unhold") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            {
                let _power = lock(&host.power);
                if !host.agent_running() && !host.rebooting.load(Ordering::SeqCst) {
                    self.start(host);
                }
            }
            baseline.push(host.checks());
        }
        let mut took: Vec<Option<u64>> = vec![None; self.hosts.len()];
        // Twice the checks' time, and a margin for reboots.
        let began = Instant::now();
        let deadline = began
            + Duration::from_millis(2 * CONVERGE_WITHIN_CHECKS * CHECK_INTERVAL_MS)
            + Duration::from_secs(120);
        loop {
            let document = self.runtime.block_on(self.current_document());
            let halts = self.runtime.block_on(self.halt_list());
            let mut all = true;
            for (at, host) in self.hosts.iter().enumerate() {
                let checks = host.checks().saturating_sub(baseline[at]);
                let state = host.node.host.state();
                let booted = state.booted.map(|b| b.digest).unwrap_or_default();
                let deny: Vec<String> = host
                    .agent_state()
                    .map(|s| s.deny_list.keys().cloned().collect())
                    .unwrap_or_default();
                let offered = document.as_ref().and_then(|document| {
                    judge::offered(document, halts.as_ref(), &booted, host.wariness, &deny)
                });
                let settled = document.is_some()
                    && offered.is_none()
                    && state.apply_pid.is_none()
                    && !host.rebooting.load(Ordering::SeqCst);
                if settled {
                    took[at].get_or_insert(checks);
                } else {
                    took[at] = None;
                    all = false;
                    if checks > CONVERGE_WITHIN_CHECKS {
                        self.violation(format!(
                            "{}: not on what it is offered after {checks} checks (offered {offered:?})",
                            host.name
                        ));
                        return self.convergence(took);
                    }
                }
            }
            if all {
                return self.convergence(took);
            }
            if Instant::now() > deadline {
                for (at, host) in self.hosts.iter().enumerate() {
                    if took[at].is_none() {
                        self.violation(format!(
                            "{}: not on what it is offered {} s after the faults stopped",
                            host.name,
                            began.elapsed().as_secs()
                        ));
                    }
                }
                return self.convergence(took);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn convergence(&self, took: Vec<Option<u64>>) -> Vec<(String, Option<u64>)> {
        self.hosts
            .iter()
            .map(|h| h.name.clone())
            .zip(took)
            .collect()
    }

    /// Stop every agent (no reboot thread starts one again) and the server.
    pub fn shut_down(&self) {
        self.faults_over.store(true, Ordering::SeqCst);
        self.all_over.store(true, Ordering::SeqCst);
        self.stopping.store(true, Ordering::SeqCst);
        for host in &self.hosts {
            let _power = lock(&host.power);
            host.kill_agent();
            // A stand-in still blocked in a reboot command.
            if let Some(pid) = host.node.host.state().apply_pid {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
        lock(&self.server).stop();
    }

    /// What the agents logged about the faults: the documents they refused
    /// and why, and state-machine events they had to ignore.
    fn agent_log_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for host in &self.hosts {
            let log = std::fs::read_to_string(&host.log).unwrap_or_default();
            for line in log.lines() {
                let what = if line.contains("ignored invalid=") {
                    "agent warnings: a state-machine event ignored"
                } else if line.contains("kind=reboot_lock_wait") {
                    if line.contains("halted this host's group") {
                        "checks refused a reboot: the lock group halted"
                    } else {
                        "checks waiting for a free slot"
                    }
                } else if !line.contains("kind=source_error") {
                    continue;
                } else if line.contains("expired at") {
                    "checks refused an expired document"
                } else if line.contains("signature") {
                    "checks refused a forged document (no valid signature)"
                } else if line.contains("HTTP 5") {
                    "checks stopped by a registry 5xx"
                } else {
                    "checks stopped by another source error"
                };
                *counts.entry(what.to_string()).or_default() += 1;
            }
        }
        counts
    }

    pub fn report(&self, converged: &[(String, Option<u64>)], took: Duration) -> String {
        let mut out = String::new();
        let table = |out: &mut String, title: &str, map: &BTreeMap<String, u64>| {
            out.push_str(&format!("{title}:\n"));
            for (what, n) in map {
                out.push_str(&format!("  {n:>7}  {what}\n"));
            }
        };
        out.push_str(&format!(
            "soak: seed {}, {} hosts, {} slots, {:.0} s in all\n",
            self.seed,
            self.hosts.len(),
            SLOTS,
            took.as_secs_f64()
        ));
        let mut faults = lock(&self.faults).clone();
        for (what, n) in self.proxy.touched() {
            faults.insert(format!("  requests {what}"), n);
        }
        table(&mut out, "faults injected", &faults);
        let mut events = lock(&self.events).clone();
        let staged: u64 = self
            .hosts
            .iter()
            .map(|h| {
                h.node
                    .host
                    .state()
                    .events
                    .iter()
                    .filter(|e| e.starts_with("staged"))
                    .count() as u64
            })
            .sum();
        events.insert("stagings".into(), staged);
        for (what, n) in self.agent_log_counts() {
            events.insert(what, n);
        }
        events.insert(
            "agent checks".into(),
            self.hosts.iter().map(Host::checks).sum(),
        );
        table(&mut out, "what the fleet did", &events);
        let mut checks = lock(&self.checks).clone();
        checks.insert(
            format!("most hosts rebooting at once (slots: {SLOTS})"),
            self.most_rebooting.load(Ordering::SeqCst),
        );
        table(&mut out, "invariant checks made", &checks);
        out.push_str("convergence after the faults stopped (checks):\n");
        for (host, checks) in converged {
            let booted = self
                .hosts
                .iter()
                .find(|h| &h.name == host)
                .and_then(|h| h.node.host.state().booted)
                .and_then(|b| b.version)
                .unwrap_or_default();
            match checks {
                Some(n) => out.push_str(&format!("  {host}: on {booted} after {n} checks\n")),
                None => out.push_str(&format!("  {host}: on {booted}, NOT converged\n")),
            }
        }
        out.push_str(&format!("violations: {}\n", lock(&self.violations).len()));
        out
    }
}

/// What a release is picked for.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Any,
    Barrier,
    Block,
}

/// The process runs (a zombie has ended; only its parent has not reaped it).
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last parenthesis.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X' | 'x'))
}

/// A free loopback port below the usual ephemeral range (32768 and up), so
/// that no outgoing connection takes it while the server is stopped.
fn free_port_below_ephemeral(seed: u64) -> u16 {
    for attempt in 0..2000u64 {
        let port = 20000 + ((seed.wrapping_add(attempt * 7919)) % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}
