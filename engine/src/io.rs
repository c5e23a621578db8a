//! Named tensors to and from safetensors files (the format of Hugging Face's `safetensors`: an
//! 8-byte little-endian header length, a JSON header of name -> dtype, shape, byte range, then the
//! raw little-endian data).
//!
//! Writes are atomic: the bytes go to a temporary file in the same directory, which is flushed to
//! disk (fsync) and then renamed over the target, so a crash leaves the old file or the new one,
//! never half of one. Errors name the file and, where there is one, the tensor.
//!
//! [`load_tensor_file`] reads safetensors or a PyTorch checkpoint ([`pth`]), chosen by the file's
//! first bytes, not its extension.

mod error;
pub mod pth;

pub use error::IoError;

use crate::{DType, Tensor};
use safetensors::{Dtype as StDtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A tensor's bytes as safetensors wants them (little-endian, row-major).
struct Bytes {
    dtype: StDtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> StDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// A tensor's values as safetensors bytes (a CUDA tensor is downloaded: a driver failure is an
/// error).
fn to_bytes(t: &Tensor) -> crate::Result<Bytes> {
    let values = t.try_to_vec_f64()?;
    let (dtype, data) = match t.dtype() {
        DType::F64 => (
            StDtype::F64,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        // f32 and anything narrower is stored as f32
        _ => (
            StDtype::F32,
            values
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect(),
        ),
    };
    Ok(Bytes {
        dtype,
        shape: t.shape().to_vec(),
        data,
    })
}

/// Writes `tensors` (name, tensor) to `path` atomically, with optional string `metadata`
/// (safetensors' `__metadata__`). f64 tensors are stored as F64, all others as F32. Names must be
/// unique.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<&HashMap<String, String>>,
) -> Result<(), IoError> {
    let mut seen = std::collections::HashSet::new();
    for (name, _) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(IoError::new(path, Some(name), "name given twice"));
        }
    }
    let bytes: Vec<(String, Bytes)> = tensors
        .iter()
        .map(|(n, t)| {
            let b = to_bytes(t).map_err(|e| IoError::new(path, Some(n), e.to_string()))?;
            Ok((n.clone(), b))
        })
        .collect::<Result<_, IoError>>()?;
    let buffer = safetensors::serialize(
        bytes.iter().map(|(n, b)| (n.as_str(), b)),
        metadata.cloned(),
    )
    .map_err(|e| IoError::new(path, None, format!("cannot serialise: {e}")))?;
    write_atomic(path, &buffer)
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
/// the directory (so the rename itself survives a crash).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| IoError::new(path, None, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let io = |what: &str, e: std::io::Error| IoError::new(path, None, format!("{what}: {e}"));
    let result = (|| {
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| io("cannot create temporary file", e))?;
        f.write_all(bytes).map_err(|e| io("cannot write", e))?;
        f.sync_all().map_err(|e| io("cannot sync", e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| io("cannot rename temporary file", e))?;
        // Directory fsync makes the rename durable; not every platform allows opening a directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A loaded file: tensors in the file's order of names (sorted) and the string metadata.
#[derive(Debug)]
pub struct TensorFile {
    pub tensors: Vec<(String, Tensor)>,
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Reads a safetensors file or a PyTorch checkpoint (`.pth`, zip or legacy; [`pth`]), told apart
/// by the first bytes. A checkpoint's tensors keep their dotted names; its metadata says
/// `format` = `pytorch-pth`, `container` = `zip` / `legacy`, and `skipped` lists the integer and
/// boolean tensors that were not loaded (comma-separated).
pub fn load_tensor_file(path: &Path) -> Result<TensorFile, IoError> {
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| IoError::new(path, None, format!("cannot read: {e}")))?;
    if !pth::is_pth(&head[..n]) {
        return load_safetensors(path);
    }
    let file = pth::load_pth(path)?;
    let metadata = HashMap::from([
        ("format".to_string(), "pytorch-pth".to_string()),
        ("container".to_string(), file.container.to_string()),
        ("skipped".to_string(), file.skipped.join(",")),
    ]);
    Ok(TensorFile {
        tensors: file.tensors,
        metadata,
    })
}

/// Reads every tensor of a safetensors file. F64 stays f64; F32, F16 and BF16 become f32.
pub fn load_safetensors(path: &Path) -> Result<TensorFile, IoError> {
    let buffer =
        std::fs::read(path).map_err(|e| IoError::new(path, None, format!("cannot read: {e}")))?;
    let file = SafeTensors::deserialize(&buffer)
        .map_err(|e| IoError::new(path, None, format!("not a safetensors file: {e}")))?;
    let metadata = SafeTensors::read_metadata(&buffer)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default();
    let mut names: Vec<&str> = file.names();
    names.sort_unstable();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let view = file
            .tensor(name)
            .map_err(|e| IoError::new(path, Some(name), e.to_string()))?;
        let shape = view.shape().to_vec();
        let data = view.data();
        let bad = |what: String| IoError::new(path, Some(name), what);
        let t = match view.dtype() {
            StDtype::F64 => Tensor::from_vec(
                data.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect::<Vec<f64>>(),
                &shape,
            ),
            StDtype::F32 => Tensor::from_vec(
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect::<Vec<f32>>(),
                &shape,
            ),
            StDtype::F16 => Tensor::from_vec(
                data.chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect::<Vec<f32>>(),
                &shape,
            ),
            StDtype::BF16 => Tensor::from_vec(
                data.chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect::<Vec<f32>>(),
                &shape,
            ),
            other => {
                return Err(bad(format!(
                    "dtype {other:?} is not a float type DinoNAT reads"
                )))
            }
        }
        .map_err(|e| bad(e.to_string()))?;
        tensors.push((name.to_string(), t));
    }
    Ok(TensorFile { tensors, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    #[test]
    fn save_load_round_trip_is_bitwise_and_names_errors() {
        let dir = std::env::temp_dir().join(format!("dinonat-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let mut rng = Rng::new(3);
        let a = rng.normal(&[3, 7], 0.0, 1.0, DType::F32);
        let b = rng.normal(&[5], 0.0, 1.0, DType::F64);
        let c = rng.normal(&[4, 6], 0.0, 1.0, DType::F32).t().unwrap(); // a strided view
        let tensors = vec![
            ("a.w".to_string(), a.clone()),
            ("b".to_string(), b.clone()),
            ("c".to_string(), c.clone()),
        ];
        let meta = HashMap::from([("arch".to_string(), "nat_nano".to_string())]);
        save_safetensors(&path, &tensors, Some(&meta)).unwrap();
        let loaded = load_safetensors(&path).unwrap();
        assert_eq!(
            loaded.metadata.get("arch").map(String::as_str),
            Some("nat_nano")
        );
        assert_eq!(loaded.tensors.len(), 3);
        for (name, t) in &tensors {
            let l = loaded.get(name).unwrap();
            assert_eq!(l.shape(), t.shape());
            assert_eq!(l.dtype(), t.dtype());
            let (x, y) = (l.to_vec_f64(), t.to_vec_f64());
            assert!(
                x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{name}"
            );
        }
        // no temporary file left behind
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        let dup = vec![("x".to_string(), a.clone()), ("x".to_string(), a)];
        let e = save_safetensors(&path, &dup, None).unwrap_err();
        assert_eq!(e.tensor.as_deref(), Some("x"));
        std::fs::write(&path, b"not a tensor file").unwrap();
        let e = load_safetensors(&path).unwrap_err().to_string();
        assert!(e.contains("t.safetensors"), "{e}");
        let e = load_safetensors(&dir.join("missing.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.safetensors"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
