//! `inferd-gguf-onnx FILE.gguf MODELS NAME`: imports a GGUF file as the model folder
//! MODELS/NAME, as `inferctl import` does, for the importer's Python tests.

use inferd_import::folder::{import_gguf, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gguf, models, name] = args.as_slice() else {
        return Err("usage: inferd-gguf-onnx FILE.gguf MODELS NAME".into());
    };
    let o = Options {
        models: models.into(),
        name: name.clone(),
        force: true,
        threads: 2,
    };
    let (dir, a) = import_gguf(gguf.as_ref(), &o, &mut |s| {
        if s.done == s.total {
            eprintln!("{}: {}/{}", s.stage, s.done, s.total)
        }
    })?;
    eprintln!(
        "imported {gguf} as {} ({}, {} layers)",
        dir.display(),
        a.family,
        a.num_layers
    );
    Ok(())
}
