//! Image references, repositories and document locations as operators and
//! registries write them; what Cairn prints of a reference parses back to it.

#![no_main]
#![forbid(unsafe_code)]

use cairn_oci::{ImageRef, Location, Repository};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = ImageRef::parse(text) {
        let printed = reference.to_string();
        match ImageRef::parse(&printed) {
            Ok(again) => assert_eq!(again, reference, "{text:?} printed as {printed:?}"),
            Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
        }
        let _ = reference.reference();
        let _ = reference.repository.api_host();
    }
    if let Ok(repository) = Repository::parse(text) {
        let printed = repository.to_string();
        match Repository::parse(&printed) {
            Ok(again) => assert_eq!(again, repository, "{text:?} printed as {printed:?}"),
            Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
        }
        let tagged = repository.tagged("stable").to_string();
        assert!(
            ImageRef::parse(&tagged).is_ok(),
            "{tagged:?} does not parse"
        );
    }
    if let Ok(location) = Location::parse(text) {
        let _ = location.to_string();
    }
    let _ = cairn_oci::reference::is_valid_tag(text);
});
