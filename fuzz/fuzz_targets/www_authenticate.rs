//! `WWW-Authenticate` challenges as registries send them.

#![no_main]
#![forbid(unsafe_code)]

use cairn_oci::auth::Challenge;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(Challenge::Bearer {
        realm,
        service,
        scope,
    }) = Challenge::parse(header)
    {
        // Every value is a piece of the header.
        for value in [Some(&realm), service.as_ref(), scope.as_ref()]
            .into_iter()
            .flatten()
        {
            assert!(
                header.contains(value.as_str()),
                "{value:?} is not in {header:?}"
            );
        }
    }
});
