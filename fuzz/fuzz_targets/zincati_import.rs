//! Zincati's configuration as `cairn import-zincati` reads it: fragments
//! in /usr/lib and /etc; whatever the import writes passes Cairn's own
//! validation.

#![no_main]
#![forbid(unsafe_code)]

use cairn_agent::config::{self, zincati};
use cairn_fuzz::{Choices, scratch, split, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pieces = split(data, 2);
    let root = scratch().join("zincati");
    let dirs = ["usr/lib/zincati/config.d", "etc/zincati/config.d"];
    for (dir, piece) in dirs.iter().zip(&pieces) {
        write(&root.join(dir).join("50-fuzz.toml"), piece);
    }
    let mut choices = Choices::new(data);
    let host = zincati::HostValues {
        basearch: choices.flip().then(|| "x86_64".to_string()),
        platform: choices.flip().then(|| "metal".to_string()),
        stream: choices.flip().then(|| "stable".to_string()),
        node_id: Ok("e0f3745b108f471cbd4883c6fbed8cdd".to_string()),
    };
    if let Ok(imported) = zincati::import(&root, &host)
        && let Err(e) = config::validate_fragment(&imported.text, "90-zincati.toml")
    {
        panic!(
            "the imported fragment fails validation: {e}\n{}",
            imported.text
        );
    }
    let _ = std::fs::remove_dir_all(&root);
});
