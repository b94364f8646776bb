//! `inferd check`: validates the config and every manifest and reports the runtime, without
//! serving anything. Useful in CI and in package scripts.

use crate::config::Config;
use crate::repository::Repository;
use crate::runtime;

/// Prints a report; returns the number of problems found.
pub fn check(config: &Config) -> usize {
    let mut problems = 0;
    let mut fail = |what: String| {
        println!("FAIL  {what}");
        problems += 1;
    };
    match config.validate() {
        Ok(()) => println!("ok    config"),
        Err(e) => fail(e.to_string()),
    }
    match runtime::load(config.runtime.library.as_deref()) {
        Ok(rt) => {
            println!("ok    ONNX Runtime {} at {}", rt.version, rt.path.display());
            println!("      providers: {}", rt.providers.join(", "));
        }
        Err(e) => fail(e.to_string()),
    }
    let dir = config.models_dir();
    match Repository::new(&dir).scan() {
        Err(e) => fail(format!("model repository {}: {e}", dir.display())),
        Ok(entries) => {
            println!(
                "ok    model repository {} ({} models)",
                dir.display(),
                entries.len()
            );
            for entry in entries {
                match entry.spec {
                    Ok(spec) => println!(
                        "ok    model {} ({}, providers {:?})",
                        entry.name,
                        spec.manifest.kind.as_str(),
                        spec.manifest.execution.providers
                    ),
                    Err(e) => fail(format!("model {}: {e}", entry.name)),
                }
            }
        }
    }
    problems
}
