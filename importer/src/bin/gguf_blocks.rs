//! `inferd-gguf-blocks FILE OUT_DIR TENSOR...`: each named tensor of a GGUF file transcoded
//! (`blocks.rs`) and de-quantized, as OUT_DIR/TENSOR/weights.npy, and as a model there
//! (`model.onnx`: Y[K, N] = A[K, K] × Wᵀ, the graph the importer writes for a weight), for
//! tests that compare them with the `gguf` package and run the model in ONNX Runtime.

use std::io::Write;
use std::path::Path;

use inferd_import::blocks::Blocks;
use inferd_import::gguf::Gguf;
use inferd_import::onnx::{DataType, Dim, ExternalData, ValueInfo};
use inferd_import::ops::{f32_bytes, Graph};

fn npy(path: &Path, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::fs::File::create(path)?;
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(&f32_bytes(data))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, out, names @ ..] = args.as_slice() else {
        return Err("usage: inferd-gguf-blocks FILE OUT_DIR TENSOR...".into());
    };
    let g = Gguf::open(Path::new(file))?;
    for name in names {
        let t = g
            .tensor(name)
            .ok_or_else(|| format!("no tensor {name:?}"))?;
        let l = t
            .format
            .nbits()
            .ok_or_else(|| format!("{name} is not block-quantized"))?;
        let (k, n) = (t.dims[0] as usize, (t.elements() / t.dims[0]) as usize);
        let mut blocks = Blocks::default();
        for b in g.data(t).chunks_exact(t.format.block().1) {
            t.format.transcode(b, &mut blocks);
        }
        let dir = Path::new(out).join(name);
        std::fs::create_dir_all(&dir)?;
        npy(&dir.join("weights.npy"), &[n, k], &blocks.dequantize())?;
        let data = std::fs::File::create(dir.join("model.onnx.data"))?;
        let mut graph = Graph::new(ExternalData::new(
            std::io::BufWriter::new(data),
            "model.onnx.data",
        ));
        let w = graph.nbits("w", l, &blocks, n, k)?;
        let y = graph.matmul_nbits("A", &w, 2, "y");
        graph.node("Identity", "", &[&y], &["Y"], vec![]);
        let info = |name: &str, dims: [usize; 2]| ValueInfo {
            name: name.into(),
            dtype: DataType::Float,
            dims: dims.map(|d| Dim::Fixed(d as i64)).to_vec(),
        };
        let (model, _) = graph.finish(vec![info("A", [k, k])], vec![info("Y", [k, n])], vec![])?;
        std::fs::write(dir.join("model.onnx"), model.encode("model.onnx.data"))?;
        std::fs::write(
            dir.join("layout.json"),
            format!(r#"{{"k": {k}, "n": {n}}}"#),
        )?;
    }
    Ok(())
}
