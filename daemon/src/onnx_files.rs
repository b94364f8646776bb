//! What an ONNX model file holds that inferd must know before ONNX Runtime loads it: the files
//! it makes ONNX Runtime open besides itself (the `location` of every tensor stored as external
//! data), so each can be checked to stay inside the model folder, and the operators it uses
//! (which decode path fits it). Found by walking the model's protobuf without loading it: large
//! payloads are skipped, not read.
//!
//! The walk covers every place a tensor can be: initializers, sparse initializers, node
//! attributes (tensors and subgraphs, at any depth), functions (their nodes and attribute
//! defaults) and training info. `EPContext` nodes, which name a file of their own through an
//! attribute, are refused outright.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Why a model file was refused before ONNX Runtime saw it.
#[derive(Debug, thiserror::Error)]
pub enum OnnxFileError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a readable ONNX model: {0}")]
    Malformed(Malformed),
    #[error("it has EPContext nodes, which name files of their own; inferd does not load them")]
    EpContext,
    #[error("an external-data location names a memory address, not a file")]
    MemoryAddress,
}

/// How the protobuf itself is broken.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("truncated")]
    Truncated,
    #[error("a varint longer than 10 bytes")]
    LongVarint,
    #[error("a field larger than the file")]
    HugeField,
    #[error("a field runs past its message")]
    Overrun,
    #[error("a {0}-byte string where a file name belongs")]
    LongString(u64),
    #[error("a file name that is not UTF-8")]
    NotUtf8,
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("wire type {0} out of place")]
    WireType(u64),
}

impl From<Malformed> for OnnxFileError {
    fn from(m: Malformed) -> Self {
        OnnxFileError::Malformed(m)
    }
}

/// The messages that can hold tensors, and the fields through which they do.
#[derive(Clone, Copy)]
enum Msg {
    Model,
    TrainingInfo,
    Graph,
    Node,
    Attribute,
    Function,
    Tensor,
    Sparse,
    Entry,
}

impl Msg {
    fn child(self, field: u64) -> Option<Msg> {
        use Msg::*;
        Some(match (self, field) {
            (Model, 7) => Graph,
            (Model, 20) => TrainingInfo,
            (Model, 25) => Function,
            (TrainingInfo, 1 | 2) => Graph,
            (Graph, 1) => Node,
            (Graph, 5) => Tensor,
            (Graph, 15) => Sparse,
            (Node, 5) => Attribute,
            (Attribute, 5 | 10) => Tensor,
            (Attribute, 6 | 11) => Graph,
            (Attribute, 22 | 23) => Sparse,
            (Function, 7) => Node,
            (Function, 11) => Attribute,
            (Sparse, 1 | 2) => Tensor,
            (Tensor, 13) => Entry,
            _ => return None,
        })
    }
}

/// Graphs nest through attributes; deeper than this is not a model anyone exported.
const MAX_DEPTH: usize = 64;
/// A `location` longer than this is not a file name.
const MAX_STRING: u64 = 4096;

struct Walker {
    r: BufReader<File>,
    /// Where `r` is in the file (kept here: asking the file costs a system call).
    pos: u64,
    locations: Vec<String>,
    ops: BTreeSet<String>,
}

type Walked<T> = Result<T, OnnxFileError>;

impl Walker {
    fn varint(&mut self) -> Walked<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let mut b = [0u8];
            self.r
                .read_exact(&mut b)
                .map_err(|_| Malformed::Truncated)?;
            self.pos += 1;
            v |= u64::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed::LongVarint.into())
    }

    /// Skips `n` bytes: within the buffer when they are there, by seeking when not.
    fn skip(&mut self, n: u64) -> Walked<()> {
        let i = i64::try_from(n).map_err(|_| Malformed::HugeField)?;
        self.r.seek_relative(i)?;
        self.pos += n;
        Ok(())
    }

    fn string(&mut self, n: u64) -> Walked<String> {
        if n > MAX_STRING {
            return Err(Malformed::LongString(n).into());
        }
        let mut buf = vec![0u8; n as usize];
        self.r
            .read_exact(&mut buf)
            .map_err(|_| Malformed::Truncated)?;
        self.pos += n;
        Ok(String::from_utf8(buf).map_err(|_| Malformed::NotUtf8)?)
    }

    /// Skips a (deprecated) group up to its end tag: ONNX has none, but a parser that did not
    /// skip them would give up on a file ONNX Runtime reads.
    fn skip_group(&mut self, field: u64, depth: usize) -> Walked<()> {
        if depth > MAX_DEPTH {
            return Err(Malformed::TooDeep.into());
        }
        loop {
            let tag = self.varint()?;
            match tag & 7 {
                0 => drop(self.varint()?),
                1 => self.skip(8)?,
                5 => self.skip(4)?,
                2 => {
                    let n = self.varint()?;
                    self.skip(n)?;
                }
                3 => self.skip_group(tag >> 3, depth + 1)?,
                4 if tag >> 3 == field => return Ok(()),
                w => return Err(Malformed::WireType(w).into()),
            }
        }
    }

    /// Walks `len` bytes of a `msg` (`None`: to the end of the file).
    fn message(&mut self, msg: Msg, len: Option<u64>, depth: usize) -> Walked<()> {
        if depth > MAX_DEPTH {
            return Err(Malformed::TooDeep.into());
        }
        let end = len.map(|l| self.pos + l);
        let (mut key, mut value) = (None, None);
        loop {
            let pos = self.pos;
            match end {
                Some(e) if pos == e => break,
                Some(e) if pos > e => return Err(Malformed::Overrun.into()),
                _ => {}
            }
            let tag = match self.varint() {
                Ok(t) => t,
                Err(_) if end.is_none() => break, // the end of the file ends the model
                Err(e) => return Err(e),
            };
            let (field, wire) = (tag >> 3, tag & 7);
            match wire {
                0 => drop(self.varint()?),
                1 => self.skip(8)?,
                5 => self.skip(4)?,
                2 => {
                    let n = self.varint()?;
                    match (msg, field, msg.child(field)) {
                        (Msg::Entry, 1, _) => key = Some(self.string(n)?),
                        (Msg::Entry, 2, _) => value = Some(self.string(n)?),
                        // A node's op_type.
                        (Msg::Node, 4, _) => {
                            let op = self.string(n)?;
                            if op == "EPContext" {
                                return Err(OnnxFileError::EpContext);
                            }
                            self.ops.insert(op);
                        }
                        (_, _, Some(child)) => self.message(child, Some(n), depth + 1)?,
                        _ => self.skip(n)?,
                    }
                }
                3 => self.skip_group(field, depth + 1)?,
                w => return Err(Malformed::WireType(w).into()),
            }
        }
        if let (Msg::Entry, Some("location"), Some(v)) = (msg, key.as_deref(), value) {
            self.locations.push(v);
        }
        Ok(())
    }
}

/// What a model file holds (see the module's doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelFile {
    /// Every external-data `location`, as written (relative to the model file's folder).
    pub external_data: Vec<String>,
    /// The op types of its nodes, at any depth.
    pub ops: BTreeSet<String>,
}

impl ModelFile {
    pub fn uses(&self, op: &str) -> bool {
        self.ops.contains(op)
    }
}

/// Reads the model at `path` (see the module's doc).
pub fn inspect(path: &Path) -> Result<ModelFile, OnnxFileError> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut w = Walker {
        r: BufReader::new(file),
        pos: 0,
        locations: Vec::new(),
        ops: BTreeSet::new(),
    };
    w.message(Msg::Model, None, 0)?;
    // Seeking past the end succeeds; a field claiming more than the file holds is not.
    if w.pos > size {
        return Err(Malformed::Truncated.into());
    }
    // ONNX Runtime reads this location as "the data is at a memory address", not a file.
    if w.locations.iter().any(|l| l.contains("_ORT_MEM_ADDR_")) {
        return Err(OnnxFileError::MemoryAddress);
    }
    w.locations.sort();
    w.locations.dedup();
    Ok(ModelFile {
        external_data: w.locations,
        ops: w.ops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(n: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(n << 3 | 2, &mut out);
        varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    /// A TensorProto with external data at `location`, and a large raw payload to skip.
    fn tensor(location: &str) -> Vec<u8> {
        let mut t = field(8, b"weight"); // name
        t.extend(field(9, &[0u8; 5000])); // raw_data
        let entry = [field(1, b"location"), field(2, location.as_bytes())].concat();
        t.extend(field(13, &entry));
        t.extend(field(13, &[field(1, b"offset"), field(2, b"0")].concat()));
        t
    }

    #[test]
    fn finds_external_data_wherever_tensors_live() {
        let initializer = field(5, &tensor("weights.data"));
        // A Constant node whose attribute holds a tensor, and an If whose subgraph has one.
        let attr_tensor = field(5, &field(5, &tensor("const.data")));
        let sub = field(5, &field(6, &field(5, &tensor("../escape.data"))));
        let node1 = field(1, &attr_tensor);
        let node2 = field(1, &sub);
        let graph = [initializer, node1, node2].concat();
        let mut model = Vec::new();
        varint(1 << 3, &mut model); // ir_version
        varint(8, &mut model);
        model.extend(field(7, &graph));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.onnx");
        std::fs::write(&p, &model).unwrap();
        assert_eq!(
            inspect(&p).map(|m| m.external_data).unwrap(),
            ["../escape.data", "const.data", "weights.data"]
        );
        std::fs::write(&p, b"").unwrap();
        assert!(
            inspect(&p).map(|m| m.external_data).unwrap().is_empty(),
            "an empty model names nothing"
        );
        std::fs::write(&p, &model[..model.len() - 3]).unwrap();
        assert!(
            matches!(
                inspect(&p),
                Err(OnnxFileError::Malformed(Malformed::Truncated))
            ),
            "truncated"
        );
        let mut deep = field(5, &tensor("x"));
        for _ in 0..100 {
            deep = field(1, &field(5, &field(6, &deep)));
        }
        std::fs::write(&p, field(7, &deep)).unwrap();
        assert!(matches!(
            inspect(&p),
            Err(OnnxFileError::Malformed(Malformed::TooDeep))
        ));
        // A function's attribute default, and training info, hold tensors too.
        let function = field(11, &field(5, &tensor("fn.data")));
        let training = field(1, &field(5, &tensor("train.data")));
        std::fs::write(&p, [field(25, &function), field(20, &training)].concat()).unwrap();
        assert_eq!(
            inspect(&p).map(|m| m.external_data).unwrap(),
            ["fn.data", "train.data"]
        );
        let node = field(1, &field(4, b"EPContext"));
        std::fs::write(&p, field(7, &node)).unwrap();
        assert!(matches!(inspect(&p), Err(OnnxFileError::EpContext)));
        std::fs::write(&p, field(7, &field(5, &tensor("*/_ORT_MEM_ADDR_/*")))).unwrap();
        assert!(matches!(inspect(&p), Err(OnnxFileError::MemoryAddress)));
    }
}
