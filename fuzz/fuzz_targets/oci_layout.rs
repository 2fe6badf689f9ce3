//! OCI image indexes, manifests and configs as an image layout holds them:
//! the input is `index.json` and blobs (cut at the separator); `<blobN>` and
//! `<sizeN>` in any of them stand for blob N's digest and size, so the
//! fuzzer can link them. Then everything a reader does with a layout: tags,
//! manifests, a document, a halt list, a trust root and a repository scan.

#![no_main]
#![forbid(unsafe_code)]

use cairn_fuzz::{note, runtime, scratch, split, write};
use cairn_oci::layout::Layout;
use cairn_oci::scan::{self, ScanCache, ScanOptions};
use cairn_oci::{Store, document, halts, roots};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// `piece` with every `<blobN>` and `<sizeN>` of the blobs already named.
fn linked(piece: &[u8], named: &[(usize, String, usize)]) -> Vec<u8> {
    let mut text = piece.to_vec();
    for (n, digest, size) in named {
        for (placeholder, value) in [
            (format!("<blob{n}>"), digest.clone()),
            (format!("<size{n}>"), size.to_string()),
        ] {
            text = replace(&text, placeholder.as_bytes(), value.as_bytes());
        }
    }
    text
}

fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let pieces = split(data, 6);
    let root = scratch().join("layout");
    let _ = std::fs::remove_dir_all(&root);
    write(
        &root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    // Later blobs first, so each may name the ones after it.
    let mut named = Vec::new();
    for (n, piece) in pieces.iter().enumerate().skip(1).rev() {
        let blob = linked(piece, &named);
        let hex = hex_of(&blob);
        write(&root.join("blobs/sha256").join(&hex), &blob);
        named.push((n, format!("sha256:{hex}"), blob.len()));
    }
    write(&root.join("index.json"), &linked(pieces[0], &named));
    let layout = match Layout::open(&root) {
        Ok(layout) => layout,
        Err(e) => return note(format_args!("layout: {e}")),
    };
    let tags = match layout.list_tags() {
        Ok(tags) => tags,
        Err(e) => return note(format_args!("tags: {e}")),
    };
    note(format_args!("tags: {tags:?}"));
    for tag in tags.iter().take(4) {
        let _ = layout.resolve(tag);
        let _ = layout.get_manifest(tag);
    }
    let store = Store::Layout(layout);
    runtime().block_on(async {
        let fetched = document::fetch(&store, "stable").await;
        note(format_args!(
            "document: {:?}",
            fetched.map(|d| d.document.sequence)
        ));
        let halts = halts::fetch(&store, &halts::default_tag("stable")).await;
        note(format_args!("halt list: {}", halts.is_ok()));
        let root = roots::fetch_root(&store, 1).await;
        note(format_args!("root: {}", root.is_ok()));
        let mut cache = ScanCache::default();
        let options = ScanOptions::for_stream("stable");
        let scanned = scan::scan(&store, &options, &mut cache, &|_, _| {}).await;
        note(format_args!(
            "scan: {:?}",
            scanned.map(|r| (r.candidates.len(), r.skipped))
        ));
    });
});

fn hex_of(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
