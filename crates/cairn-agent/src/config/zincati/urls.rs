//! Base URLs as Zincati used them, carried so that Cairn calls the very
//! same endpoints: Zincati's templates filled in with the host's values,
//! and the base rewritten where the two tools would join it differently.

use super::Line;
use super::convert::HostValues;
use super::read::Findings;

/// Which service a base URL points at: Zincati and Cairn append different
/// paths to it, by different rules.
#[derive(Debug, Clone, Copy)]
pub(super) enum Endpoint {
    Cincinnati,
    FleetLock,
}

impl Endpoint {
    /// The URL Zincati calls: reqwest's `join`, under which a base without a
    /// trailing slash loses its last path segment (and any query).
    fn zincati(self, base: &url::Url) -> Option<url::Url> {
        base.join(match self {
            Endpoint::Cincinnati => "v1/graph",
            Endpoint::FleetLock => "v1/pre-reboot",
        })
        .ok()
    }

    /// The URL Cairn calls for a base written as `text`.
    fn cairn(self, text: &str) -> Option<url::Url> {
        match self {
            Endpoint::Cincinnati => {
                let mut request =
                    cairn_oci::sources::cincinnati_request(text, "s", "a", 0.0, false).ok()?;
                request.set_query(None);
                Some(request)
            }
            Endpoint::FleetLock => {
                let base = url::Url::parse(text).ok()?;
                Some(crate::fleetlock::endpoint(&base, "pre-reboot"))
            }
        }
    }
}

/// A base URL carried so that Cairn calls exactly what Zincati called:
/// templates filled in, and the base rewritten where the two tools would
/// join it differently.
pub(super) fn carry_url(
    key: &str,
    value: &str,
    file: &str,
    host: &HostValues,
    group: &str,
    endpoint: Endpoint,
    findings: &mut Findings,
) -> Option<String> {
    let refuse = |findings: &mut Findings, message: String| {
        findings.refused.push(Line::key(file, key, message));
        None
    };
    if value.is_empty() {
        return refuse(findings, "empty; Zincati would not start with it".into());
    }
    let (filled, used) = match fill_in(value, host, group) {
        Ok(filled) => filled,
        Err(message) => return refuse(findings, message),
    };
    let parsed = url::Url::parse(&filled)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    let Some(parsed) = parsed else {
        return refuse(findings, format!("{filled:?} is not an http(s) URL"));
    };
    let Some(called) = endpoint.zincati(&parsed) else {
        return refuse(
            findings,
            format!("{filled:?}: no endpoint can be built on it"),
        );
    };
    let mut carried = filled.clone();
    let mut why = Vec::new();
    if !used.is_empty() {
        let values: Vec<String> = used
            .iter()
            .map(|(name, v)| format!("${{{name}}} = {v}"))
            .collect();
        why.push(format!(
            "Cairn does not fill in templates, so the values Zincati filled in on this host are written ({})",
            values.join(", ")
        ));
    }
    if endpoint.cairn(&carried).as_ref() != Some(&called) {
        // The directory Zincati resolved against, with a trailing slash.
        carried = parsed.join(".").map(|u| u.to_string()).unwrap_or(carried);
        if endpoint.cairn(&carried).as_ref() != Some(&called) {
            return refuse(
                findings,
                format!("Cairn cannot call {called} from any base URL"),
            );
        }
        why.push(format!(
            "Zincati called {called} (a base without a trailing slash loses its last path segment, and any query), and Cairn calls the same from this base"
        ));
    }
    if !why.is_empty() {
        findings.notes.push(Line::key(
            file,
            key,
            format!("carried as {carried}: {}", why.join("; ")),
        ));
    }
    Some(carried)
}

/// Zincati's templating of base URLs: `${basearch}`, `${group}`,
/// `${platform}` and `${stream}` are replaced by the host's values. Any other
/// `${…}` would stay as written, which is refused here.
fn fill_in(
    template: &str,
    host: &HostValues,
    group: &str,
) -> Result<(String, Vec<(String, String)>), String> {
    let mut out = String::new();
    let mut used: Vec<(String, String)> = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        let (value, flag) = match name {
            "group" => (Some(group), ""),
            "basearch" => (host.basearch.as_deref(), "--basearch"),
            "platform" => (host.platform.as_deref(), "--platform"),
            "stream" => (host.stream.as_deref(), "--stream"),
            _ => {
                return Err(format!(
                    "${{{name}}} is not one of Zincati's variables (basearch, group, platform, stream): Zincati would have called it as written"
                ));
            }
        };
        let Some(value) = value else {
            let from = match name {
                "platform" => {
                    "ignition.platform.id is not on the kernel command line (/proc/cmdline)"
                }
                _ => "the import does not read it from the host (Zincati asks rpm-ostree)",
            };
            return Err(format!(
                "uses ${{{name}}}, but {from}: give the host's value with {flag}"
            ));
        };
        out.push_str(value);
        if !used.iter().any(|(n, _)| n == name) {
            used.push((name.to_string(), value.to_string()));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostValues {
        HostValues {
            basearch: Some("x86_64".into()),
            platform: Some("metal".into()),
            stream: None,
            node_id: Err(crate::config::zincati::NodeIdError::Unreadable(
                "no such file".into(),
            )),
        }
    }

    #[test]
    fn templates_fill_in_zincatis_four_names_only() {
        let (url, used) = fill_in(
            "https://l.example/${group}/${basearch}/${platform}/",
            &host(),
            "web",
        )
        .expect("filled");
        assert_eq!(url, "https://l.example/web/x86_64/metal/");
        assert_eq!(used.len(), 3);
        let err = fill_in("https://l.example/${stream}/", &host(), "web").expect_err("no stream");
        assert!(err.contains("--stream"), "{err}");
        let err = fill_in("https://l.example/${node}/", &host(), "web").expect_err("unknown");
        assert!(
            err.starts_with("${node} is not one of Zincati's variables"),
            "{err}"
        );
        let (plain, used) = fill_in("https://l.example/$x/", &host(), "web").expect("plain");
        assert_eq!((plain.as_str(), used.len()), ("https://l.example/$x/", 0));
    }

    #[test]
    fn a_base_is_rewritten_only_where_the_tools_disagree() {
        let mut findings = Findings::default();
        let same = carry_url(
            "k",
            "https://updates.coreos.fedoraproject.org",
            "f",
            &host(),
            "default",
            Endpoint::Cincinnati,
            &mut findings,
        );
        assert_eq!(
            same.as_deref(),
            Some("https://updates.coreos.fedoraproject.org")
        );
        assert!(findings.notes.is_empty());
        // Zincati called http://locks.example/v1/pre-reboot for this base.
        let rewritten = carry_url(
            "k",
            "http://locks.example/fleet_lock",
            "f",
            &host(),
            "default",
            Endpoint::FleetLock,
            &mut findings,
        );
        assert_eq!(rewritten.as_deref(), Some("http://locks.example/"));
        assert_eq!(findings.notes.len(), 1);
        assert!(findings.refused.is_empty());
    }
}
