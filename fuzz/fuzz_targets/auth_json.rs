//! Registry auth files (containers' `auth.json`, Docker's `config.json`),
//! then the login chosen for a few repositories.

#![no_main]
#![forbid(unsafe_code)]

use cairn_oci::Repository;
use cairn_oci::auth::Credentials;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(credentials) = Credentials::from_auth_json(data, "auth.json") else {
        return;
    };
    for text in [
        "quay.io/acme/os",
        "docker.io/library/fedora",
        "localhost:5000/x",
        "registry.example/os",
    ] {
        if let Ok(repository) = Repository::parse(text)
            && let Some(login) = credentials.for_repository(&repository)
        {
            // The password never shows in debug output.
            let shown = format!("{login:?}");
            assert_eq!(
                shown,
                format!("Login {{ username: {:?}, .. }}", login.username)
            );
        }
    }
});
