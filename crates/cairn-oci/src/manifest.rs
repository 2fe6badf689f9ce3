//! OCI manifests, indexes and descriptors as `oci-spec` types: parsing that
//! names the field at fault, and JSON output that is the same on every run.

use crate::error::{OciError, Result};
use oci_spec::image::{Descriptor, Digest, MediaType};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parse a manifest, index or layout file read from `what` (a registry
/// reference, a layout path). The error names `what` and the JSON path of the
/// field at fault, such as `layers[0].size`.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        // An error of the whole document (bad JSON, a missing top-level field) has no path.
        let located = error
            .path()
            .iter()
            .any(|segment| !matches!(segment, serde_path_to_error::Segment::Unknown));
        if located {
            OciError::invalid(what, format!("{}: {inner}", error.path()))
        } else {
            OciError::invalid(what, inner)
        }
    })?;
    // Nothing but whitespace may follow the JSON.
    deserializer
        .end()
        .map_err(|e| OciError::invalid(what, format!("after the JSON: {e}")))?;
    Ok(value)
}

/// The JSON of a manifest or index, compact and with keys sorted.
///
/// `oci-spec` keeps annotations in `HashMap`s, whose order changes from run
/// to run. Sorting every object's keys gives the same bytes, and so the same
/// digest, for the same content, whether or not some dependency turns on
/// serde_json's `preserve_order`.
pub(crate) fn to_json<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    let mut value = serde_json::to_value(value).map_err(|e| OciError::invalid(what, e))?;
    sort_keys(&mut value);
    serde_json::to_vec(&value).map_err(|e| OciError::invalid(what, e))
}

fn sort_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// The `mediaType` a manifest or index declares; empty when it declares none
/// or is not JSON (the caller then falls back on what the registry said).
pub(crate) fn declared_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Declared {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Declared>(bytes)
        .ok()
        .and_then(|declared| declared.media_type)
        .unwrap_or_default()
}

/// A digest Cairn computed itself, as `oci-spec`'s type.
pub(crate) fn digest(digest: &str) -> Result<Digest> {
    digest
        .parse()
        .map_err(|e| OciError::invalid(format!("digest {digest:?}"), e))
}

/// A descriptor with no optional fields.
pub(crate) fn descriptor(media_type: &str, digest_text: &str, size: usize) -> Result<Descriptor> {
    Ok(Descriptor::new(
        MediaType::from(media_type),
        size as u64,
        digest(digest_text)?,
    ))
}

/// The digest of a blob a descriptor points at, when it is one Cairn will
/// fetch: sha256 (it goes into URLs and paths) and no larger than `limit`
/// (a size an untrusted manifest declares must not choose what is read).
/// `field` names the descriptor in the error, for example `layers[2]`.
pub(crate) fn blob_digest(
    descriptor: &Descriptor,
    limit: usize,
    what: &str,
    field: &str,
) -> Result<String> {
    let digest = descriptor.digest().to_string();
    if !cairn_graph::digest::is_sha256_digest(&digest) {
        return Err(OciError::invalid(
            what,
            format!("{field}.digest: {digest:?} is not a sha256 digest"),
        ));
    }
    if descriptor.size() > limit as u64 {
        return Err(OciError::invalid(
            what,
            format!(
                "{field}.size: {} bytes, more than the {limit} read for it",
                descriptor.size()
            ),
        ));
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ImageIndex, ImageManifest};

    const DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn manifest_with_layer(layer: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{DIGEST}","size":2}},"layers":[{layer}]}}"#
        )
    }

    /// Found by fuzzing: bytes after the JSON were ignored.
    #[test]
    fn only_whitespace_may_follow_a_manifest() {
        let manifest = manifest_with_layer("");
        assert!(parse::<ImageManifest>(format!("{manifest}\n").as_bytes(), "m").is_ok());
        let error = parse::<ImageManifest>(format!("{manifest}{{}}").as_bytes(), "m")
            .expect_err("trailing bytes");
        assert!(error.to_string().contains("after the JSON"), "{error}");
    }

    fn error_of<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        parse::<T>(json.as_bytes(), "manifest of r/x:tag")
            .expect_err(json)
            .to_string()
    }

    #[test]
    fn errors_name_the_source_and_the_field() {
        let cases = [
            (
                manifest_with_layer(&format!(r#"{{"digest":"{DIGEST}","size":2}}"#)),
                "layers[0]: missing field `mediaType`",
            ),
            (
                manifest_with_layer(&format!(
                    r#"{{"mediaType":"x/y","digest":"{DIGEST}","size":-1}}"#
                )),
                "layers[0].size: invalid value: integer `-1`",
            ),
            (
                manifest_with_layer(&format!(
                    r#"{{"mediaType":"x/y","digest":"{DIGEST}","size":1e30}}"#
                )),
                "layers[0].size: invalid type: floating point",
            ),
            (
                manifest_with_layer(&format!(
                    r#"{{"mediaType":"x/y","digest":"{DIGEST}","size":"2"}}"#
                )),
                "layers[0].size: invalid type: string",
            ),
            (
                manifest_with_layer(r#"{"mediaType":"x/y","digest":"sha256:../x","size":2}"#),
                "layers[0].digest: ",
            ),
            (
                manifest_with_layer(&format!(
                    r#"{{"mediaType":7,"digest":"{DIGEST}","size":2}}"#
                )),
                "layers[0].mediaType: invalid type: integer `7`",
            ),
            (
                r#"{"schemaVersion":2,"config":{},"layers":"x"}"#.to_string(),
                "config: missing field `mediaType`",
            ),
            (
                r#"{"schemaVersion":"2"}"#.to_string(),
                "schemaVersion: invalid type: string",
            ),
        ];
        for (json, expected) in cases {
            let message = error_of::<ImageManifest>(&json);
            assert!(
                message.starts_with("manifest of r/x:tag: ") && message.contains(expected),
                "{json}\n  gave: {message}\n  wanted: {expected}"
            );
        }
        let message = error_of::<ImageIndex>(r#"{"schemaVersion":2,"manifests":[{"size":2}]}"#);
        assert!(
            message.contains("manifests[0]: missing field `mediaType`"),
            "{message}"
        );
        let message = error_of::<ImageIndex>("{not json");
        assert!(
            message.starts_with("manifest of r/x:tag: key must be"),
            "{message}"
        );
    }

    #[test]
    fn declared_sizes_above_the_limit_and_other_digests_are_refused() {
        let mut layer = descriptor("x/y", DIGEST, 2).expect("descriptor");
        assert_eq!(
            blob_digest(&layer, 2, "m", "layers[0]").expect("fits"),
            DIGEST
        );
        layer.set_size(u64::MAX);
        let message = blob_digest(&layer, 2, "m", "layers[0]")
            .expect_err("huge")
            .to_string();
        assert!(message.starts_with("m: layers[0].size: "), "{message}");
        layer.set_digest(digest(&format!("sha512:{}", "a".repeat(128))).expect("sha512"));
        let message = blob_digest(&layer, 2, "m", "layers[0]")
            .expect_err("sha512")
            .to_string();
        assert!(message.starts_with("m: layers[0].digest: "), "{message}");
    }

    #[test]
    fn the_declared_media_type_is_read_leniently() {
        assert_eq!(
            declared_media_type(br#"{"mediaType":"a/b","x":[1]}"#),
            "a/b"
        );
        assert_eq!(declared_media_type(b"{}"), "");
        assert_eq!(declared_media_type(b"not json"), "");
    }
}
