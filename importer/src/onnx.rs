//! An ONNX model written by hand: the few protobuf messages a decoder graph needs, encoded
//! directly (no protoc, no generated code), with initializer data in an external file so the
//! protobuf stays small however large the weights are.
//!
//! Field numbers are onnx.proto's (ModelProto, GraphProto, NodeProto, AttributeProto,
//! TensorProto, ValueInfoProto, TypeProto, TensorShapeProto, OperatorSetIdProto,
//! StringStringEntryProto).

use std::io::Write;

/// ONNX element types (TensorProto.DataType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum DataType {
    Float = 1,
    Uint8 = 2,
    Int32 = 6,
    Int64 = 7,
    Bool = 9,
    Float16 = 10,
}

impl DataType {
    pub fn size(self) -> usize {
        match self {
            DataType::Float => 4,
            DataType::Uint8 | DataType::Bool => 1,
            DataType::Int32 => 4,
            DataType::Int64 => 8,
            DataType::Float16 => 2,
        }
    }
}

/// A tensor dimension: fixed, or named (symbolic).
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Fixed(i64),
    Named(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    String(String),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub op: String,
    pub domain: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(String, Attr)>,
}

/// An initializer: small ones inline, weights in the external data file.
#[derive(Debug, Clone)]
pub struct Initializer {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<i64>,
    pub data: Data,
}

#[derive(Debug, Clone)]
pub enum Data {
    Raw(Vec<u8>),
    External { offset: u64, length: u64 },
}

impl Initializer {
    /// The same bytes under another name and shape (a tied embedding table and LM head).
    pub fn alias(&self, name: &str, dtype: DataType, dims: &[i64]) -> Initializer {
        Initializer {
            name: name.to_owned(),
            dtype,
            dims: dims.to_vec(),
            data: self.data.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ValueInfo {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<Dim>,
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub opsets: Vec<(String, i64)>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub initializers: Vec<Initializer>,
    pub metadata: Vec<(String, String)>,
}

/// Appends tensors to the external data file, each at a 64-byte aligned offset (ONNX Runtime
/// can then map them in place).
pub struct ExternalData<W: Write> {
    out: W,
    /// The file's name, as the model refers to it (beside model.onnx).
    pub location: String,
    written: u64,
}

impl<W: Write> ExternalData<W> {
    pub fn new(out: W, location: &str) -> Self {
        ExternalData {
            out,
            location: location.to_owned(),
            written: 0,
        }
    }

    /// Writes `bytes` (a tensor's little-endian data) and returns its initializer.
    pub fn add(
        &mut self,
        name: &str,
        dtype: DataType,
        dims: &[i64],
        bytes: &[u8],
    ) -> std::io::Result<Initializer> {
        let pad = self.written.next_multiple_of(64) - self.written;
        self.out.write_all(&vec![0; pad as usize])?;
        let offset = self.written + pad;
        self.out.write_all(bytes)?;
        self.written = offset + bytes.len() as u64;
        Ok(Initializer {
            name: name.to_owned(),
            dtype,
            dims: dims.to_vec(),
            data: Data::External {
                offset,
                length: bytes.len() as u64,
            },
        })
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Protobuf encoding: varints and length-delimited fields, messages built inside out.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.varint(u64::from(field) << 3);
        self.varint(v as u64);
        self
    }

    fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.varint((u64::from(field) << 3) | 5);
        self.0.extend(v.to_le_bytes());
        self
    }

    fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.varint((u64::from(field) << 3) | 2);
        self.varint(v.len() as u64);
        self.0.extend(v);
        self
    }

    fn str(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    fn msg(&mut self, field: u32, m: Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }
}

fn entry(k: &str, v: &str) -> Msg {
    let mut m = Msg::default();
    m.str(1, k).str(2, v);
    m
}

fn node(n: &Node) -> Msg {
    let mut m = Msg::default();
    for i in &n.inputs {
        m.str(1, i);
    }
    for o in &n.outputs {
        m.str(2, o);
    }
    m.str(3, &n.name).str(4, &n.op);
    for (name, a) in &n.attrs {
        let mut am = Msg::default();
        am.str(1, name);
        match a {
            Attr::Float(f) => am.float(2, *f).int(20, 1),
            Attr::Int(i) => am.int(3, *i).int(20, 2),
            Attr::String(s) => am.str(4, s).int(20, 3),
            Attr::Ints(v) => {
                for i in v {
                    am.int(8, *i);
                }
                am.int(20, 7)
            }
        };
        m.msg(5, am);
    }
    if !n.domain.is_empty() {
        m.str(7, &n.domain);
    }
    m
}

fn initializer(t: &Initializer, location: &str) -> Msg {
    let mut m = Msg::default();
    for d in &t.dims {
        m.int(1, *d);
    }
    m.int(2, t.dtype as i64).str(8, &t.name);
    match &t.data {
        Data::Raw(bytes) => {
            m.bytes(9, bytes);
        }
        Data::External { offset, length } => {
            m.msg(13, entry("location", location))
                .msg(13, entry("offset", &offset.to_string()))
                .msg(13, entry("length", &length.to_string()))
                .int(14, 1); // EXTERNAL
        }
    }
    m
}

fn value_info(v: &ValueInfo) -> Msg {
    let mut shape = Msg::default();
    for d in &v.dims {
        let mut dm = Msg::default();
        match d {
            Dim::Fixed(n) => dm.int(1, *n),
            Dim::Named(s) => dm.str(2, s),
        };
        shape.msg(1, dm);
    }
    let mut tensor = Msg::default();
    tensor.int(1, v.dtype as i64).msg(2, shape);
    let mut ty = Msg::default();
    ty.msg(1, tensor);
    let mut m = Msg::default();
    m.str(1, &v.name).msg(2, ty);
    m
}

impl Model {
    /// The serialized ModelProto (IR version 10, what ONNX Runtime 1.20+ reads), its
    /// initializers in `location`.
    pub fn encode(&self, location: &str) -> Vec<u8> {
        let mut g = Msg::default();
        for n in &self.nodes {
            g.msg(1, node(n));
        }
        g.str(2, "main");
        for t in &self.initializers {
            g.msg(5, initializer(t, location));
        }
        for v in &self.inputs {
            g.msg(11, value_info(v));
        }
        for v in &self.outputs {
            g.msg(12, value_info(v));
        }
        let mut m = Msg::default();
        m.int(1, 10)
            .str(2, "inferd-import")
            .str(3, env!("CARGO_PKG_VERSION"));
        m.msg(7, g);
        for (domain, version) in &self.opsets {
            let mut o = Msg::default();
            o.str(1, domain).int(2, *version);
            m.msg(8, o);
        }
        for (k, v) in &self.metadata {
            m.msg(14, entry(k, v));
        }
        m.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_groups_of_seven() {
        let mut m = Msg::default();
        m.varint(300);
        assert_eq!(m.0, [0xAC, 0x02]);
        let mut m = Msg::default();
        m.int(3, -1);
        assert_eq!(m.0.len(), 1 + 10, "negative int64s take ten bytes");
    }

    #[test]
    fn external_data_is_64_byte_aligned() {
        let mut ext = ExternalData::new(Vec::new(), "model.onnx.data");
        let a = ext.add("a", DataType::Uint8, &[3], &[1, 2, 3]).unwrap();
        let b = ext
            .add("b", DataType::Float, &[1], &1f32.to_le_bytes())
            .unwrap();
        let at = |t: &Initializer| match t.data {
            Data::External { offset, length } => (offset, length),
            Data::Raw(_) => unreachable!(),
        };
        assert_eq!((at(&a), at(&b)), ((0, 3), (64, 4)));
        assert_eq!(ext.finish().unwrap().len(), 68);
    }
}
