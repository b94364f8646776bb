//! `inferd-gguf-blocks FILE OUT_DIR TENSOR...`: each named tensor of a GGUF file transcoded to
//! `MatMulNBits` initializers and de-quantized, as .npy files in OUT_DIR/TENSOR/, for tests
//! that compare them with the `gguf` package and run them through ONNX Runtime.

use std::io::Write;
use std::path::Path;

use inferd_import::blocks::{Blocks, Zeros};
use inferd_import::gguf::Gguf;

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
