//! `cairn root`: make the first trust root, rotate its keys, and show a root
//! or a chain of them (docs/publishing.md#trust-roots).
//!
//! A release team keeps its roots in one directory, `<N>.root.json` each;
//! `cairn publish --roots DIR` pushes the versions a registry lacks. Both
//! writing verbs check the root they make would be accepted before writing
//! it, so a root that hosts would refuse never reaches the directory.

use crate::cli::args::{self, RegistryArgs};
use anyhow::{Context, bail};
use cairn_oci::roots::{self, WalkError};
use cairn_oci::signing::{KeyId, SigningKey, VerifyingKey};
use cairn_oci::trust::{Role, RootError, SignedRoot, TrustRoot, TrustedRoot, build_root};
use cairn_oci::{Location, Store};
use clap::Subcommand;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The lifetime of a new root when `--expires` is not given.
pub const DEFAULT_EXPIRES: &str = "365d";

/// The `root` verbs.
#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Write the first trust root (version 1) into a new directory of roots.
    ///
    /// The graph and halt roles have threshold 1; `cairn root rotate` changes
    /// them. Hosts still on configured keys (version 0, no root yet) take
    /// version 1 only when every one of their `updates.keys` signed it: give
    /// those private keys as --sign-key too.
    Init(InitArgs),
    /// Write the next root version: add or remove keys, change thresholds or
    /// renew the expiry.
    ///
    /// It is written only if a host holding the newest root would accept it;
    /// otherwise the command says which signatures are missing.
    Rotate(RotateArgs),
    /// Print a root, a directory of roots, or the chain a repository holds.
    ///
    /// It shows the version, expiry, every key with its roles and each role's
    /// threshold; for a repository, the versions walked from cairn-root-1.
    /// Exits 1 when a chain or root is refused or the newest root has expired.
    Show(ShowArgs),
}

/// Write root version 1.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// A public key (PEM) that signs graph documents (repeatable; at least one).
    #[arg(long = "graph-key", value_name = "PUB", required = true)]
    graph_keys: Vec<PathBuf>,
    /// A public key (PEM) that signs the next root (repeatable). Default: the graph keys.
    #[arg(long = "root-key", value_name = "PUB")]
    root_keys: Vec<PathBuf>,
    /// How many distinct root keys must sign the next root. Default: 2 when there are two root keys or more, else 1 (which needs --allow-single-key).
    #[arg(long, value_name = "N")]
    root_threshold: Option<u32>,
    /// A public key (PEM) that signs halt lists, which under it may only add
    /// halts (repeatable). The graph keys are in the halt role too, unless
    /// --no-graph-keys-in-halt.
    #[arg(long = "halt-key", value_name = "PUB")]
    halt_keys: Vec<PathBuf>,
    /// Leave the graph keys out of the halt role (it then needs a --halt-key).
    #[arg(long)]
    no_graph_keys_in_halt: bool,
    /// How long the root stays valid from now (s, m, h, d or w).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_EXPIRES)]
    expires: String,
    /// A private key (PEM) to sign the root with (repeatable): enough root
    /// keys to meet the root threshold, and every configured host key.
    #[arg(long = "sign-key", value_name = "KEY", required = true)]
    sign_keys: Vec<PathBuf>,
    /// The directory of roots to create (1.root.json is written into it).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Accept a root threshold of 1: one stolen or lost key then decides
    /// every later root.
    #[arg(long)]
    allow_single_key: bool,
}

/// Write the next root version.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The directory of roots (`<N>.root.json`, from `cairn root init`).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Give a role a key: `root=PUB`, `graph=PUB` or `halt=PUB` (a PEM public
    /// key file; repeatable).
    #[arg(long = "add-key", value_name = "ROLE=PUB")]
    add_keys: Vec<String>,
    /// Take a key from a role: `ROLE=PUB` or `ROLE=KEYID` (the full id or a
    /// unique prefix of 8 hex digits or more; repeatable). A key no role
    /// names any more leaves the root.
    #[arg(long = "remove-key", value_name = "ROLE=PUB|KEYID")]
    remove_keys: Vec<String>,
    /// How many distinct root keys must sign the next root. Default: as in the newest root.
    #[arg(long, value_name = "N")]
    root_threshold: Option<u32>,
    /// How many distinct graph keys must sign a document. Default: as in the newest root.
    #[arg(long, value_name = "N")]
    graph_threshold: Option<u32>,
    /// How many distinct halt keys must sign a halt list. Default: as in the newest root.
    #[arg(long, value_name = "N")]
    halt_threshold: Option<u32>,
    /// How long the new root stays valid from now (s, m, h, d or w).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_EXPIRES)]
    expires: String,
    /// A private key (PEM) to sign the new root with (repeatable): a
    /// threshold of the newest root's root keys and a threshold of the new
    /// root's own.
    #[arg(long = "sign-key", value_name = "KEY", required = true)]
    sign_keys: Vec<PathBuf>,
    /// Accept a root threshold of 1: one stolen or lost key then decides
    /// every later root.
    #[arg(long)]
    allow_single_key: bool,
}

/// Print roots.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A directory of roots, one root file, or a repository: a registry
    /// reference or oci:DIR (a document reference's tag is ignored), whose
    /// chain is walked from cairn-root-1.
    #[arg(value_name = "DIR|FILE|REF")]
    source: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Run a `root` verb.
pub fn run(command: RootCommand) -> anyhow::Result<ExitCode> {
    match command {
        RootCommand::Init(args) => init(args),
        RootCommand::Rotate(args) => rotate(args),
        RootCommand::Show(args) => show(args),
    }
}

// ---------------------------------------------------------------------------
// Reading keys and flags.

/// Public keys from files, refusing the same key material twice.
fn public_keys(flag: &str, paths: &[PathBuf]) -> anyhow::Result<Vec<VerifyingKey>> {
    let mut keys: Vec<(PathBuf, VerifyingKey)> = Vec::new();
    for path in paths {
        let key = VerifyingKey::from_file(path)?;
        let id = key.key_id();
        if let Some((first, _)) = keys.iter().find(|(_, known)| known.key_id() == id) {
            bail!(
                "{flag} {} is the same key as {flag} {} (key id {}): give each key once",
                path.display(),
                first.display(),
                id.short()
            );
        }
        keys.push((path.clone(), key));
    }
    Ok(keys.into_iter().map(|(_, key)| key).collect())
}

/// Private keys from files; one key given twice signs once.
fn signing_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<SigningKey>> {
    let mut keys: Vec<SigningKey> = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let key = SigningKey::from_pem(&text, &path.display().to_string())?;
        let id = key.verifying_key().key_id();
        if !keys.iter().any(|k| k.verifying_key().key_id() == id) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// When a new root expires: `--expires` from now, to the second.
fn expiry(text: &str) -> anyhow::Result<Timestamp> {
    let lifetime = args::parse_duration(text).context("--expires")?;
    if lifetime <= SignedDuration::ZERO {
        bail!("--expires {text} must be longer than nothing");
    }
    let now = Timestamp::now().as_second();
    now.checked_add(lifetime.as_secs())
        .and_then(|second| Timestamp::from_second(second).ok())
        .with_context(|| format!("--expires {text} is too far in the future"))
}

/// The rule every root keeps unless told otherwise: a threshold of 1 lets
/// one key, stolen or lost, decide every later root.
fn check_root_threshold(threshold: u32, keys: usize, allow_single_key: bool) -> anyhow::Result<()> {
    if threshold < 2 && !allow_single_key {
        bail!(
            "the root role's threshold would be {threshold} (of {keys} root key{}): one stolen or \
             lost key would then decide every later root, so a thief could replace all the other \
             keys and a lost key could stop rotation. Give two or more root keys and a threshold \
             of 2 or more, or --allow-single-key to accept that risk",
            if keys == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

fn short_ids<'a>(ids: impl IntoIterator<Item = &'a KeyId>) -> String {
    let ids: Vec<&str> = ids.into_iter().map(KeyId::short).collect();
    if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    }
}

/// What a root role still needs, in words: `None` when its threshold is met.
fn role_shortfall(role_keys: &cairn_oci::trust::RoleKeys, signed: &SignedRoot) -> Option<String> {
    let signers = role_keys.signers(&signed.signatures);
    let threshold = role_keys.threshold();
    if signers.len() >= threshold && threshold > 0 {
        return None;
    }
    let missing: Vec<&KeyId> = role_keys
        .key_ids()
        .filter(|id| !signers.contains(*id))
        .collect();
    Some(format!(
        "the root role of version {} needs {threshold} distinct signatures and has {} ({}); \
         sign also with {} more of: {}",
        role_keys.root_version,
        signers.len(),
        short_ids(&signers),
        threshold.saturating_sub(signers.len()),
        short_ids(missing)
    ))
}

/// Write a root file that must not exist yet.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (a root file is never overwritten)",
                path.display()
            )
        })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(error) = written {
        drop(file);
        // A half-written root would break the chain: leave none.
        let _ = std::fs::remove_file(path);
        return Err(error).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// init

fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let graph = public_keys("--graph-key", &args.graph_keys)?;
    let root = if args.root_keys.is_empty() {
        graph.clone()
    } else {
        public_keys("--root-key", &args.root_keys)?
    };
    let extra_halt = public_keys("--halt-key", &args.halt_keys)?;
    let mut halt = extra_halt.clone();
    if !args.no_graph_keys_in_halt {
        for key in &graph {
            let id = key.key_id();
            if let Some(index) = extra_halt.iter().position(|k| k.key_id() == id) {
                bail!(
                    "--halt-key {} is also a --graph-key (key id {}), and the graph keys are in \
                     the halt role already: give it once (or add --no-graph-keys-in-halt)",
                    args.halt_keys[index].display(),
                    id.short()
                );
            }
            halt.push(key.clone());
        }
    }
    if halt.is_empty() {
        bail!("--no-graph-keys-in-halt leaves the halt role without a key: give a --halt-key");
    }
    let root_threshold = args
        .root_threshold
        .unwrap_or(if root.len() >= 2 { 2 } else { 1 });
    check_root_threshold(root_threshold, root.len(), args.allow_single_key)?;
    if root_threshold as usize > root.len() {
        bail!(
            "--root-threshold {root_threshold} cannot be met by {} root key{}",
            root.len(),
            if root.len() == 1 { "" } else { "s" }
        );
    }
    let expires = expiry(&args.expires)?;
    let signers = signing_keys(&args.sign_keys)?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let held: Vec<String> = std::fs::read_dir(&args.out)
        .with_context(|| format!("reading {}", args.out.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".root.json"))
        .collect();
    if !held.is_empty() {
        bail!(
            "{} holds roots already ({}): `cairn root init` starts a chain, `cairn root rotate` \
             continues one",
            args.out.display(),
            held.join(", ")
        );
    }

    let content = build_root(
        1,
        expires,
        [(&root, root_threshold), (&graph, 1), (&halt, 1)],
    )?;
    let signed = sign(&content, &signers)?;
    let trusted = TrustedRoot::pin(signed.clone())?;
    if let Some(shortfall) = role_shortfall(&trusted.role(Role::Root), &signed) {
        bail!("root version 1 would not meet its own root threshold: {shortfall}; nothing written");
    }
    let path = args.out.join(roots::root_file_name(1));
    write_new(&path, &signed.envelope)?;
    // What a reader of the directory will find: the same check publish makes.
    roots::read_chain_dir(&args.out)?;
    args::emit(&format!(
        "wrote {}: {}; expires {expires}; signed by {}\n",
        path.display(),
        trusted.describe(),
        short_ids(&key_ids_of(&signers))
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn sign(content: &TrustRoot, signers: &[SigningKey]) -> anyhow::Result<SignedRoot> {
    SignedRoot::sign(content, signers).map_err(|error| match error {
        RootError::Invalid { field, message, .. } => {
            anyhow::anyhow!("the new root: {field}: {message}")
        }
        other => other.into(),
    })
}

fn key_ids_of(signers: &[SigningKey]) -> Vec<KeyId> {
    signers.iter().map(|k| k.verifying_key().key_id()).collect()
}

// ---------------------------------------------------------------------------
// rotate

/// One role of the root being built: its keys, in order.
struct RoleDraft {
    role: Role,
    keys: Vec<VerifyingKey>,
}

fn parse_role(text: &str, flag: &str, value: &str) -> anyhow::Result<Role> {
    Role::ALL
        .into_iter()
        .find(|role| role.name() == text)
        .with_context(|| {
            format!("{flag} {value}: {text:?} is not a role; use root=…, graph=… or halt=…")
        })
}

fn split_role<'a>(flag: &str, value: &'a str) -> anyhow::Result<(Role, &'a str)> {
    let Some((role, key)) = value.split_once('=') else {
        bail!("{flag} {value}: expected ROLE=KEY, such as graph=new.pub");
    };
    Ok((parse_role(role, flag, value)?, key))
}

impl RoleDraft {
    /// The key `target` names: a PEM file, else a key id or unique prefix.
    fn find(&self, flag: &str, value: &str, target: &str) -> anyhow::Result<usize> {
        let path = Path::new(target);
        let position = if path.is_file() {
            let id = VerifyingKey::from_file(path)?.key_id();
            self.keys.iter().position(|k| k.key_id() == id)
        } else {
            let prefix = target.to_ascii_lowercase();
            if prefix.len() < 8 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "{flag} {value}: {target:?} is neither a public key file nor a key id (8 hex \
                     digits or more)"
                );
            }
            let matching: Vec<usize> = (0..self.keys.len())
                .filter(|&i| self.keys[i].key_id().as_str().starts_with(&prefix))
                .collect();
            if matching.len() > 1 {
                bail!(
                    "{flag} {value}: {target} names several keys of the {} role; give more digits",
                    self.role
                );
            }
            matching.first().copied()
        };
        position.with_context(|| {
            let ids: Vec<KeyId> = self.keys.iter().map(VerifyingKey::key_id).collect();
            format!(
                "{flag} {value}: the {} role has no such key; its keys are {}",
                self.role,
                short_ids(&ids)
            )
        })
    }
}

fn rotate(args: RotateArgs) -> anyhow::Result<ExitCode> {
    let chain = roots::read_chain_dir(&args.dir)?;
    let Some(newest) = chain.last() else {
        bail!("{}: holds no root", args.dir.display());
    };
    let held = TrustedRoot::pin(newest.clone())?;
    let version = newest.version();
    let Some(next_version) = version.checked_add(1) else {
        bail!("root version {version} is the last there can be");
    };
    let listed = newest.root.validate(&args.dir.display().to_string())?;
    let mut drafts: Vec<RoleDraft> = Role::ALL
        .into_iter()
        .map(|role| RoleDraft {
            role,
            keys: newest
                .root
                .roles
                .get(role)
                .keys
                .iter()
                .filter_map(|id| listed.iter().find(|(known, _)| known.as_str() == id))
                .map(|(_, key)| key.clone())
                .collect(),
        })
        .collect();

    for value in &args.remove_keys {
        let (role, target) = split_role("--remove-key", value)?;
        let draft = &mut drafts[role as usize];
        let index = draft.find("--remove-key", value, target)?;
        draft.keys.remove(index);
    }
    for value in &args.add_keys {
        let (role, path) = split_role("--add-key", value)?;
        let key = VerifyingKey::from_file(Path::new(path))?;
        let id = key.key_id();
        let draft = &mut drafts[role as usize];
        if draft.keys.iter().any(|k| k.key_id() == id) {
            bail!(
                "--add-key {value}: the {role} role has this key already (key id {})",
                id.short()
            );
        }
        draft.keys.push(key);
    }

    let thresholds = [
        (Role::Root, args.root_threshold, "--root-threshold"),
        (Role::Graph, args.graph_threshold, "--graph-threshold"),
        (Role::Halt, args.halt_threshold, "--halt-threshold"),
    ]
    .map(|(role, given, flag)| {
        (
            given.unwrap_or(newest.root.roles.get(role).threshold),
            given.is_some(),
            flag,
        )
    });
    for (draft, (threshold, given, flag)) in drafts.iter().zip(&thresholds) {
        let count = draft.keys.len();
        if count == 0 {
            bail!(
                "the {} role would have no key left: add one with --add-key {}=PUB",
                draft.role,
                draft.role
            );
        }
        if *threshold == 0 || *threshold as usize > count {
            let origin = if *given {
                format!("{flag} {threshold}")
            } else {
                format!(
                    "the {} threshold {threshold} (kept from version {version})",
                    draft.role
                )
            };
            bail!(
                "{origin} cannot be met by the {} role's {count} key{}: add keys with \
                 --add-key {}=PUB, or give {flag} between 1 and {count}",
                draft.role,
                if count == 1 { "" } else { "s" },
                draft.role
            );
        }
    }
    check_root_threshold(thresholds[0].0, drafts[0].keys.len(), args.allow_single_key)?;
    let expires = expiry(&args.expires)?;
    let signers = signing_keys(&args.sign_keys)?;

    let content = build_root(
        next_version,
        expires,
        [
            (&drafts[0].keys, thresholds[0].0),
            (&drafts[1].keys, thresholds[1].0),
            (&drafts[2].keys, thresholds[2].0),
        ],
    )?;
    let signed = sign(&content, &signers)?;
    let path = args.dir.join(roots::root_file_name(next_version));
    if let Err(error) = held.accept_next(signed.clone(), &path.display().to_string()) {
        let candidate = TrustedRoot::pin(signed.clone())?;
        let needs: Vec<String> = [held.role(Role::Root), candidate.role(Role::Root)]
            .iter()
            .filter_map(|role| role_shortfall(role, &signed))
            .collect();
        let needs = if needs.is_empty() {
            String::new()
        } else {
            format!("\n{}", needs.join("\n"))
        };
        bail!(
            "root version {next_version} would not be accepted by a host holding version \
             {version}, so nothing was written: {error}{needs}"
        );
    }
    write_new(&path, &signed.envelope)?;
    let trusted = TrustedRoot::pin(signed.clone())?;
    let removed: Vec<&KeyId> = held
        .key_ids()
        .filter(|id| !trusted.key_ids().any(|kept| kept == *id))
        .collect();
    let removed = if removed.is_empty() {
        String::new()
    } else {
        format!("; keys gone from the root: {}", short_ids(removed))
    };
    args::emit(&format!(
        "wrote {}: {}; expires {expires}; signed by {}{removed}\n",
        path.display(),
        trusted.describe(),
        short_ids(&key_ids_of(&signers))
    ))?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------
// show

/// What `show` found.
struct Shown {
    /// What was read, as given.
    source: String,
    /// `dir`, `file` or `repository`.
    kind: &'static str,
    /// The versions read or walked, oldest first.
    versions: Vec<u64>,
    /// The root shown: the newest reached.
    root: Option<SignedRoot>,
    /// Why a chain or root was refused.
    refused: Option<String>,
    /// Something to know that is not a refusal.
    note: Option<String>,
    /// For a file: each signature with its claimed id and the root key (of
    /// the root's own root role) it verifies with.
    signatures: Option<Vec<(String, Option<KeyId>)>>,
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    let location = Location::parse(&args.source)?;
    let shown = match &location {
        Location::File(path) if path.is_dir() => show_dir(&args.source, path)?,
        Location::File(path) => show_file(&args.source, path)?,
        Location::Registry(reference) => {
            let store = Store::registry(args.registry.client()?, reference.repository.clone());
            show_store(&args.source, &store, now)?
        }
        Location::Layout { path, .. } => {
            let layout = cairn_oci::layout::Layout::open(path)
                .with_context(|| format!("opening {}", location))?;
            show_store(&args.source, &Store::Layout(layout), now)?
        }
        Location::Url(url) => {
            bail!("{url}: a URL carries no root chain; download the root file and show that")
        }
    };
    let expired = shown
        .root
        .as_ref()
        .is_some_and(|root| root.root.expires < now);
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&shown_json(&shown, now))?;
        text.push('\n');
        text
    } else {
        shown_text(&shown, now)
    };
    args::emit(&text)?;
    Ok(if shown.refused.is_some() || expired {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn show_dir(source: &str, dir: &Path) -> anyhow::Result<Shown> {
    let chain = roots::read_chain_dir(dir)?;
    Ok(Shown {
        source: source.to_string(),
        kind: "dir",
        versions: chain.iter().map(SignedRoot::version).collect(),
        root: chain.last().cloned(),
        refused: None,
        note: Some(format!(
            "a chain of {} root{} from version 1, each accepted by the one before",
            chain.len(),
            if chain.len() == 1 { "" } else { "s" }
        )),
        signatures: None,
    })
}

fn show_file(source: &str, path: &Path) -> anyhow::Result<Shown> {
    let bytes = args::read(path)?;
    let signed = SignedRoot::from_envelope(bytes.into(), &path.display().to_string())?;
    let trusted = TrustedRoot::pin(signed.clone())?;
    let root_role = trusted.role(Role::Root);
    let signatures = signed
        .signatures
        .iter()
        .zip(&signed.claimed_key_ids)
        .map(|(signature, claimed)| {
            let by = root_role
                .signers(std::slice::from_ref(signature))
                .into_iter()
                .next();
            (claimed.clone(), by)
        })
        .collect();
    let refused = role_shortfall(&root_role, &signed).map(|shortfall| {
        format!(
            "root version {} fails its own root threshold: {shortfall}",
            signed.version()
        )
    });
    Ok(Shown {
        source: source.to_string(),
        kind: "file",
        versions: vec![signed.version()],
        root: Some(signed),
        refused,
        note: Some(
            "one root: whether the root before it accepts it is checked only in a chain".into(),
        ),
        signatures: Some(signatures),
    })
}

fn show_store(source: &str, store: &Store, now: Timestamp) -> anyhow::Result<Shown> {
    let runtime = args::runtime()?;
    let first = runtime
        .block_on(roots::fetch_root(store, 1))?
        .with_context(|| {
            format!(
                "{} has no {}: no trust root was published there (`cairn publish --roots DIR` pushes them)",
                store.describe(),
                roots::root_tag(1)
            )
        })?;
    let pinned = TrustedRoot::pin(first.clone())?;
    let mut refused = role_shortfall(&pinned.role(Role::Root), &first).map(|shortfall| {
        format!(
            "{}:{} fails its own root threshold: {shortfall}",
            store.describe(),
            roots::root_tag(1)
        )
    });
    let mut versions = vec![1];
    let mut note = None;
    let mut root = first;
    if refused.is_none() {
        let walked = runtime.block_on(roots::walk(store, &pinned, now));
        versions.extend(&walked.adopted);
        if let Some(signed) = walked.root.signed() {
            root = signed.clone();
        }
        note = walked.note;
        // Expiry is shown with the root itself; other refusals stop the walk.
        refused = walked.refused.and_then(|error| match error {
            WalkError::Root(RootError::Expired { .. }) => None,
            other => Some(other.to_string()),
        });
    }
    Ok(Shown {
        source: source.to_string(),
        kind: "repository",
        versions,
        root: Some(root),
        refused,
        note,
        signatures: None,
    })
}

/// Each key of a root with the roles that name it, in the root's order.
fn key_roles(root: &TrustRoot) -> Vec<(String, Vec<&'static str>)> {
    root.keys
        .iter()
        .map(|key| {
            let roles = Role::ALL
                .into_iter()
                .filter(|&role| root.roles.get(role).keys.contains(&key.id))
                .map(Role::name)
                .collect();
            (key.id.clone(), roles)
        })
        .collect()
}

fn versions_text(versions: &[u64]) -> String {
    let list: Vec<String> = versions.iter().map(u64::to_string).collect();
    list.join(", ")
}

fn shown_text(shown: &Shown, now: Timestamp) -> String {
    let mut text = String::new();
    match shown.kind {
        "repository" => text.push_str(&format!(
            "{}: walked from {} through version{} {}\n",
            shown.source,
            roots::root_tag(1),
            if shown.versions.len() == 1 { "" } else { "s" },
            versions_text(&shown.versions)
        )),
        _ => text.push_str(&format!(
            "{}: version{} {}\n",
            shown.source,
            if shown.versions.len() == 1 { "" } else { "s" },
            versions_text(&shown.versions)
        )),
    }
    if let Some(note) = &shown.note {
        text.push_str(&format!("note: {note}\n"));
    }
    if let Some(refused) = &shown.refused {
        text.push_str(&format!("REFUSED: {refused}\n"));
    }
    let Some(signed) = &shown.root else {
        return text;
    };
    let root = &signed.root;
    let expiry = if root.expires < now {
        "EXPIRED".to_string()
    } else {
        format!("valid for {}", days_left(root.expires, now))
    };
    text.push_str(&format!(
        "trust root version {}\nexpires: {} ({expiry})\nkeys:\n",
        root.version, root.expires
    ));
    for (id, roles) in key_roles(root) {
        text.push_str(&format!("  {id}  {}\n", roles.join(", ")));
    }
    text.push_str("roles:\n");
    for role in Role::ALL {
        let spec = root.roles.get(role);
        let ids: Vec<&str> = spec.keys.iter().map(|id| &id[..id.len().min(12)]).collect();
        text.push_str(&format!(
            "  {role}: {} of {} key{} must sign [{}]\n",
            spec.threshold,
            spec.keys.len(),
            if spec.keys.len() == 1 { "" } else { "s" },
            ids.join(" ")
        ));
    }
    if let Some(signatures) = &shown.signatures {
        text.push_str("signatures:\n");
        for (claimed, by) in signatures {
            let claimed = if claimed.is_empty() {
                "(no key id)"
            } else {
                claimed
            };
            let verdict = match by {
                Some(id) if id.as_str() == claimed => "verifies with this root key".to_string(),
                Some(id) => format!("verifies with root key {}", id.short()),
                None => "does not verify with any root key of this root".to_string(),
            };
            text.push_str(&format!("  {claimed}: {verdict}\n"));
        }
    }
    text
}

/// Whole days (or hours, under a day) until `until`.
fn days_left(until: Timestamp, now: Timestamp) -> String {
    let seconds = until.as_second() - now.as_second();
    if seconds >= 86_400 {
        format!("{} more days", seconds / 86_400)
    } else {
        format!("{} more hours", seconds / 3_600)
    }
}

fn shown_json(shown: &Shown, now: Timestamp) -> serde_json::Value {
    let root = shown.root.as_ref().map(|signed| {
        let root = &signed.root;
        let keys: Vec<serde_json::Value> = key_roles(root)
            .into_iter()
            .map(|(id, roles)| json!({"id": id, "roles": roles}))
            .collect();
        let mut roles = serde_json::Map::new();
        for role in Role::ALL {
            let spec = root.roles.get(role);
            roles.insert(
                role.name().to_string(),
                json!({"threshold": spec.threshold, "keys": spec.keys}),
            );
        }
        json!({
            "version": root.version,
            "expires": root.expires.to_string(),
            "expired": root.expires < now,
            "keys": keys,
            "roles": roles,
        })
    });
    let signatures = shown.signatures.as_ref().map(|signatures| {
        signatures
            .iter()
            .map(|(claimed, by)| {
                json!({
                    "keyid": claimed,
                    "verifies": by.is_some(),
                    "verified_by": by.as_ref().map(KeyId::to_string),
                })
            })
            .collect::<Vec<_>>()
    });
    json!({
        "source": shown.source,
        "kind": shown.kind,
        "versions": shown.versions,
        "root": root,
        "refused": shown.refused,
        "note": shown.note,
        "signatures": signatures,
    })
}
