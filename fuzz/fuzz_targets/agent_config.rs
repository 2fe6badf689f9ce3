//! Agent configuration fragments: each piece of the input alone, then all of
//! them merged by precedence from the three fragment directories.

#![no_main]
#![forbid(unsafe_code)]

use cairn_agent::config::{self, ConfigDirs};
use cairn_fuzz::{scratch, split, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pieces: Vec<&str> = split(data, 3)
        .into_iter()
        .filter_map(|piece| std::str::from_utf8(piece).ok())
        .collect();
    for piece in &pieces {
        if let Ok(settings) = config::validate_fragment(piece, "50-fuzz.toml") {
            let _ = settings.strategy_name();
        }
        let _ = config::parse_source(piece.trim());
    }
    let root = scratch().join("agent");
    let dirs = ConfigDirs::under(&root);
    for (dir, piece) in dirs.dirs.iter().zip(&pieces) {
        write(&dir.join("50-fuzz.toml"), piece.as_bytes());
    }
    let _ = config::load(&dirs);
    let _ = std::fs::remove_dir_all(&root);
});
