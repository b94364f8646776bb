//! `inferd-gguf-onnx FILE.gguf MODELS NAME [--exact]`: imports a GGUF file as the model folder
//! MODELS/NAME, as `inferctl import` does, for the importer's Python tests.

use inferd_import::folder::{import_gguf, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (exact, args): (Vec<_>, Vec<_>) = args.into_iter().partition(|a| a == "--exact");
    let [gguf, models, name] = args.as_slice() else {
        return Err("usage: inferd-gguf-onnx FILE.gguf MODELS NAME [--exact]".into());
    };
    let o = Options {
        models: models.into(),
        name: name.clone(),
        force: true,
        threads: 2,
        exact: !exact.is_empty(),
    };
    let (dir, a) = import_gguf(gguf.as_ref(), &o, &mut |stage| eprintln!("{stage}"))?;
    eprintln!(
        "imported {gguf} as {} ({}, {} layers)",
        dir.display(),
        a.family,
        a.num_layers
    );
    Ok(())
}
