//! `inferd-gguf-blocks FILE OUT_DIR TENSOR...`: each named tensor of a GGUF file transcoded to
//! `MatMulNBits` initializers and de-quantized, as .npy files in OUT_DIR/TENSOR/, and as a
//! one-node ONNX model there (`model.onnx`: Y[K, N] = A[K, K] × Wᵀ), for tests that compare
//! them with the `gguf` package and run the model in ONNX Runtime.

use std::io::Write;
use std::path::Path;

use inferd_import::blocks::{Blocks, Layout, Packed, Zeros};
use inferd_import::gguf::Gguf;
use inferd_import::onnx::{Attr, DataType, Dim, ExternalData, Model, Node, ValueInfo};

fn npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::fs::File::create(path)?;
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(data)
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A model with one MatMulNBits node over the packed weight, its initializers external.
fn matmul_model(dir: &Path, l: Layout, p: &Packed, k: usize, n: usize) -> std::io::Result<()> {
    let data = std::fs::File::create(dir.join("model.onnx.data"))?;
    let mut ext = ExternalData::new(std::io::BufWriter::new(data), "model.onnx.data");
    let blocks = (k / l.block) as i64;
    let blob = (l.block * l.bits as usize / 8) as i64;
    let b = ext.add("B", DataType::Uint8, &[n as i64, blocks, blob], &p.b)?;
    let s = ext.add(
        "scales",
        DataType::Float,
        &[p.scales.len() as i64],
        &f32s(&p.scales),
    )?;
    let z = match &p.zeros {
        Zeros::Uint8(z) => ext.add("zp", DataType::Uint8, &[z.len() as i64], z)?,
        Zeros::Float(z) => ext.add("zp", DataType::Float, &[z.len() as i64], &f32s(z))?,
    };
    ext.finish()?;
    let info = |name: &str, dims: [i64; 2]| ValueInfo {
        name: name.into(),
        dtype: DataType::Float,
        dims: dims.map(Dim::Fixed).to_vec(),
    };
    let model = Model {
        opsets: vec![(String::new(), 17), ("com.microsoft".into(), 1)],
        nodes: vec![Node {
            op: "MatMulNBits".into(),
            domain: "com.microsoft".into(),
            name: "matmul".into(),
            inputs: ["A", "B", "scales", "zp"].map(String::from).to_vec(),
            outputs: vec!["Y".into()],
            attrs: vec![
                ("K".into(), Attr::Int(k as i64)),
                ("N".into(), Attr::Int(n as i64)),
                ("bits".into(), Attr::Int(l.bits.into())),
                ("block_size".into(), Attr::Int(l.block as i64)),
            ],
        }],
        inputs: vec![info("A", [k as i64, k as i64])],
        outputs: vec![info("Y", [k as i64, n as i64])],
        initializers: vec![b, s, z],
        metadata: vec![("source".into(), "inferd-gguf-blocks".into())],
    };
    std::fs::write(dir.join("model.onnx"), model.encode("model.onnx.data"))
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
        let (k, rows) = (t.dims[0] as usize, (t.elements() / t.dims[0]) as usize);
        let (_, bytes) = t.format.block();
        let mut blocks = Blocks::default();
        for b in g.data(t).chunks_exact(bytes) {
            t.format.transcode(b, &mut blocks);
        }
        let p = blocks.pack(l, rows);
        let dir = Path::new(out).join(name);
        std::fs::create_dir_all(&dir)?;
        let n_blocks = k / l.block;
        npy(
            &dir.join("b.npy"),
            "|u1",
            &[rows, n_blocks, l.block * l.bits as usize / 8],
            &p.b,
        )?;
        npy(
            &dir.join("scales.npy"),
            "<f4",
            &[rows * n_blocks],
            &f32s(&p.scales),
        )?;
        match &p.zeros {
            Zeros::Uint8(z) => npy(&dir.join("zeros.npy"), "|u1", &[z.len()], z)?,
            Zeros::Float(z) => npy(&dir.join("zeros.npy"), "<f4", &[z.len()], &f32s(z))?,
        }
        npy(
            &dir.join("weights.npy"),
            "<f4",
            &[rows, k],
            &f32s(&blocks.dequantize()),
        )?;
        matmul_model(&dir, l, &p, k, rows)?;
        std::fs::write(
            dir.join("layout.json"),
            format!(
                r#"{{"bits": {}, "block": {}, "int_zero": {}, "k": {k}, "n": {rows}}}"#,
                l.bits, l.block, l.int_zero
            ),
        )?;
    }
    Ok(())
}
