//! containers' `registries.conf` files (version 1 and 2), then the mirror
//! and plain-HTTP answers for references drawn from the input.

#![no_main]
#![forbid(unsafe_code)]

use cairn_oci::registries_conf::RegistriesConf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut conf = RegistriesConf::default();
    if conf.add(text, "registries.conf").is_err() {
        return;
    }
    // A second file may replace the first's entries; it never fails where the first did not.
    let mut twice = conf.clone();
    assert!(twice.add(text, "registries.conf.d/50-again.conf").is_ok());
    for repository in [
        "quay.io/fedora/fedora-coreos",
        "registry.example/os",
        "localhost:5000/a/b",
        "docker.io/library/fedora",
    ] {
        let mirrors = conf.for_tag(repository);
        assert_eq!(mirrors, twice.for_tag(repository));
        let _ = conf.allows_plain_http(repository);
        for mirror in mirrors {
            let _ = conf.allows_plain_http(&mirror);
        }
    }
});
