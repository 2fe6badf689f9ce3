//! `cairn document`: verify published documents and make signing keys.

use crate::cli::args::{self, RegistryArgs};
use anyhow::Context;
use cairn_oci::document::{Seen, TrustPolicy};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// Verify documents and manage signing keys.
#[derive(Debug, Subcommand)]
pub enum DocumentCommand {
    /// Check a document's signature, expiry and sequence.
    Verify(VerifyArgs),
    /// Make an ECDSA P-256 key pair (PKCS#8 and SPKI PEM, as cosign reads them).
    #[cfg(feature = "publish")]
    Keygen(KeygenArgs),
    /// Sign a document file: writes `<file>.sig`, one base64 signature per
    /// key and line (one key: exactly what `cosign sign-blob` writes).
    #[cfg(feature = "publish")]
    Sign(SignArgs),
}

/// Sign a document file for serving from disk or a web server.
#[cfg(feature = "publish")]
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The document file.
    file: PathBuf,
    /// The private key (PEM; repeatable: one signature line per key).
    #[arg(
        long = "sign-key",
        visible_alias = "key",
        value_name = "PEM",
        required = true
    )]
    keys: Vec<PathBuf>,
}

/// Check, in order: the signature, `expires`, and that `sequence` has not
/// gone backwards since the last document `--state` recorded.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The document: a registry reference, oci:DIR[:TAG], a file or an https URL.
    location: String,
    /// A trusted public key (PEM; repeatable). Required unless `--allow-unsigned`.
    #[arg(long = "key", value_name = "PEM")]
    keys: Vec<PathBuf>,
    /// Without `--key`, check only stream, expiry and sequence, and exit 0
    /// if they pass; the signature is not checked.
    #[arg(long)]
    allow_unsigned: bool,
    /// Remembers the last accepted sequence; refuses older ones.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// The time to check expiry at (Unix seconds or RFC 3339). Default: now.
    #[arg(long)]
    now: Option<String>,
    /// Refuse a document of another stream. Default: the stream a
    /// `cairn-graph-<stream>` tag names.
    #[arg(long)]
    stream: Option<String>,
    /// Start from this trust root (a root file) instead of the --key files,
    /// and walk to the newest root beside the document. A root kept in
    /// `--state` comes first: from then on the --key files and this file are
    /// not used (docs/key-rotation.md).
    #[arg(long = "root", value_name = "FILE")]
    root: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Write `<prefix>.key` (private, mode 0600) and `<prefix>.pub`.
#[cfg(feature = "publish")]
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Path prefix of the two files.
    #[arg(long, default_value = "cairn")]
    output: PathBuf,
}

pub fn run(command: DocumentCommand) -> anyhow::Result<ExitCode> {
    match command {
        DocumentCommand::Verify(args) => verify(args),
        #[cfg(feature = "publish")]
        DocumentCommand::Keygen(args) => keygen(args),
        #[cfg(feature = "publish")]
        DocumentCommand::Sign(args) => sign(args),
    }
}

#[cfg(feature = "publish")]
fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let bytes = args::read(&args.file)?;
    // Refuse to sign what no reader would accept.
    cairn_graph::GraphDocument::from_json(&bytes)
        .with_context(|| args.file.display().to_string())?;
    let keys = args::signing_keys(&args.keys)?;
    let lines: String = keys
        .iter()
        .map(|key| format!("{}\n", key.sign(&bytes)))
        .collect();
    let signature_path = PathBuf::from(format!("{}.sig", args.file.display()));
    std::fs::write(&signature_path, lines)
        .with_context(|| format!("writing {}", signature_path.display()))?;
    args::emit(&format!("wrote {}\n", signature_path.display()))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    sequence: u64,
    digest: String,
    /// The newest trust root verified (its envelope), so a later run never
    /// walks back to an older one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<String>,
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    // Refused before any fetch: without a key, nothing would be verified.
    // A root kept in --state is checked for below, once the state is read.
    anyhow::ensure!(
        !args.keys.is_empty() || args.root.is_some() || args.state.is_some() || args.allow_unsigned,
        "{}: no --key or --root, so the signature cannot be checked; give the publisher's \
         public key with --key (or a trust root with --root), or --allow-unsigned to check \
         only stream, expiry and sequence",
        args.location
    );
    let location = cairn_oci::Location::parse(&args.location)?;
    let client = args.registry.client()?;
    let fetched = args::fetch_document(&args.location, &location, &client)?;
    let keys = args::verifying_keys(&args.keys)?;
    let state: Option<State> = match &args.state {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => {
                Some(serde_json::from_slice(&bytes).with_context(|| path.display().to_string())?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        },
        None => None,
    };
    let stream = args::expected_stream(&location, args.stream.as_deref());
    let now = args::now_or(args.now.as_deref())?;
    let stored = match state.as_ref().and_then(|s| s.root.as_deref()) {
        Some(text) => {
            let name = format!("the trust root kept in {}", args.state_name());
            let signed = cairn_oci::trust::SignedRoot::from_envelope(
                text.as_bytes().to_vec().into(),
                &name,
            )?;
            Some(cairn_oci::trust::TrustedRoot::pin(signed).context(name)?)
        }
        None => None,
    };
    let start = match stored {
        Some(stored) => Some(stored),
        None => args::start_root(args.root.as_deref(), &keys, &[])?,
    };
    anyhow::ensure!(
        start.is_some() || args.allow_unsigned,
        "{}: no --key or --root, and --state {} keeps no trust root, so the signature \
         cannot be checked; give the publisher's public key with --key (or a trust root \
         with --root), or --allow-unsigned",
        args.location,
        args.state_name()
    );
    let root = match &start {
        Some(start) => Some(
            args::walk_root(&location, &client, start, now)
                .with_context(|| args.location.clone())?,
        ),
        None => None,
    };
    let signers = root
        .as_ref()
        .map(|root| root.role(cairn_oci::trust::Role::Graph));
    let policy = TrustPolicy {
        stream: stream.as_deref(),
        signers: signers.as_ref(),
        allow_unsigned: false,
        now,
        last_seen: state.as_ref().map(|s| Seen {
            sequence: s.sequence,
            digest: &s.digest,
        }),
    };
    fetched.verify(&args.location, &policy)?;
    let digest = cairn_oci::digest::sha256_digest(&fetched.bytes);
    if let Some(path) = &args.state {
        let state = State {
            sequence: fetched.document.sequence,
            digest: digest.clone(),
            root: root
                .as_ref()
                .and_then(|root| root.signed())
                .map(|signed| String::from_utf8_lossy(&signed.envelope).into_owned()),
        };
        cairn_fs::write_atomic(path, &serde_json::to_vec(&state)?)?;
    }
    let document = &fetched.document;
    let (verdict, signature) = match &root {
        None => ("checked", "NOT checked (--allow-unsigned)".to_string()),
        Some(root) if root.version() == 0 => (
            "verified",
            format!("valid ({})", args::key_names(&args.keys)),
        ),
        Some(root) => {
            let graph = root.role(cairn_oci::trust::Role::Graph);
            let ids: Vec<&str> = graph.key_ids().map(|id| id.short()).collect();
            (
                "verified",
                format!(
                    "valid (trust root version {}: {} of graph keys {})",
                    root.version(),
                    graph.threshold(),
                    ids.join(", ")
                ),
            )
        }
    };
    args::emit(&format!(
        "{verdict} {}: stream {}, sequence {}, {} releases, issued {}, expires {}, signature {signature}\n",
        args.location,
        document.stream,
        document.sequence,
        document.releases.len(),
        document.issued,
        document.expires
    ))?;
    Ok(ExitCode::SUCCESS)
}

impl VerifyArgs {
    fn state_name(&self) -> String {
        self.state
            .as_ref()
            .map_or_else(String::new, |path| path.display().to_string())
    }
}

#[cfg(feature = "publish")]
fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = cairn_oci::signing::SigningKey::generate();
    let private = PathBuf::from(format!("{}.key", args.output.display()));
    let public = PathBuf::from(format!("{}.pub", args.output.display()));
    for path in [&private, &public] {
        anyhow::ensure!(
            !path.exists(),
            "{} exists; not overwriting a key",
            path.display()
        );
    }
    write_private(&private, key.to_pem()?.as_bytes())?;
    std::fs::write(&public, key.verifying_key().to_pem()?)
        .with_context(|| format!("writing {}", public.display()))?;
    args::emit(&format!(
        "wrote {} and {}\n",
        private.display(),
        public.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "publish")]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
