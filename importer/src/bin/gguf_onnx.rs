//! `inferd-gguf-onnx FILE.gguf OUT_DIR`: the decoder of a GGUF file as OUT_DIR/model.onnx.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gguf, out] = args.as_slice() else {
        return Err("usage: inferd-gguf-onnx FILE.gguf OUT_DIR".into());
    };
    let a = inferd_import::write_model(gguf.as_ref(), out.as_ref())?;
    eprintln!(
        "wrote {out}/model.onnx ({}, {} layers)",
        a.family, a.num_layers
    );
    Ok(())
}
