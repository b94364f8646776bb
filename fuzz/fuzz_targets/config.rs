//! The config parser: any text parses or fails with a message; a parsed config validates or
//! fails with a message; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match inferd::config::Config::parse(text, std::path::Path::new("fuzz.toml")) {
        Ok(c) => {
            if let Err(e) = c.validate() {
                assert!(!e.to_string().is_empty());
            }
            let _ = c.reloaded(c.clone());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
