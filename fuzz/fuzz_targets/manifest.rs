//! The manifest parser: any model.toml parses or fails with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = inferd::manifest::Manifest::parse(text, std::path::Path::new("model.toml")) {
        assert!(!e.to_string().is_empty());
    }
});
