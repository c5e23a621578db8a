//! PyTorch checkpoints (`.pth`, `.pt`: what `torch.save` writes) read without Python and without
//! running any of the file's code (docs/pth.md).
//!
//! Two containers: the zip archive of PyTorch >= 1.6 (`{root}/data.pkl` + one entry per storage,
//! [`zip`]) and the legacy stream of earlier versions (`_use_new_zipfile_serialization=False`:
//! magic, protocol and system-info pickles, the object pickle, the list of storage keys, then each
//! storage as an 8-byte element count and its bytes). In both the object pickle is run by the
//! restricted unpickler of [`pickle`]; tensors found in nested dicts are named by their keys joined
//! with '.' (`model.levels.0.blocks.0.attn.qkv.weight`, `teacher.backbone.norm.weight`).
//!
//! Every tensor view is checked against its storage (offset + extent inside the stored elements)
//! and every storage against the bytes the file holds, before anything is allocated; the tensors
//! together may hold at most [`MAX_EXPANSION`] times the file's stored elements (views that repeat
//! elements, such as stride 0, cannot blow up memory).

pub mod pickle;
pub mod zip;

use super::error::IoError;
use crate::Tensor;
use pickle::{Object, StorageType, TensorRef, Unpickled};
use std::collections::HashMap;
use std::path::Path;

/// The first bytes of a zip archive (a local file header).
pub const ZIP_MAGIC: [u8; 4] = *b"PK\x03\x04";
/// The first bytes of a legacy torch.save stream: PROTO 2, then LONG1 of 10 bytes (the magic
/// number 0x1950a86a20f9469cfc6c).
pub const LEGACY_MAGIC: [u8; 4] = [0x80, 0x02, 0x8a, 0x0a];
const LEGACY_MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The tensors may hold at most this many times the elements stored in the file.
pub const MAX_EXPANSION: u64 = 4;

/// What a checkpoint held.
#[derive(Debug)]
pub struct PthFile {
    /// Floating-point tensors by dotted name, in the file's order (f64 stays f64, the rest f32).
    pub tensors: Vec<(String, Tensor)>,
    /// Integer and boolean tensors (counters, index buffers) and empty ones, named but not loaded.
    pub skipped: Vec<String>,
    /// "zip" or "legacy".
    pub container: &'static str,
}

/// True when `head` (the file's first bytes) starts a `.pth` checkpoint of either container.
pub fn is_pth(head: &[u8]) -> bool {
    head.starts_with(&ZIP_MAGIC) || head.starts_with(&LEGACY_MAGIC)
}

/// Reads the tensors of the checkpoint at `path`.
pub fn load_pth(path: &Path) -> Result<PthFile, IoError> {
    let bytes =
        std::fs::read(path).map_err(|e| IoError::new(path, None, format!("cannot read: {e}")))?;
    parse_pth(&bytes).map_err(|m| IoError::new(path, None, format!("PyTorch checkpoint: {m}")))
}

/// [`load_pth`] on bytes in memory.
pub fn parse_pth(bytes: &[u8]) -> Result<PthFile, String> {
    if bytes.starts_with(&ZIP_MAGIC) {
        parse_zip(bytes)
    } else if bytes.starts_with(&LEGACY_MAGIC) {
        parse_legacy(bytes)
    } else {
        Err("neither a torch.save zip archive nor a legacy torch.save stream".into())
    }
}

fn parse_zip(bytes: &[u8]) -> Result<PthFile, String> {
    let archive = zip::ZipArchive::parse(bytes)?;
    let pickles: Vec<&str> = archive
        .entries
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .collect();
    let root = match pickles.as_slice() {
        [one] => one.trim_end_matches("data.pkl"),
        [] => return Err("the zip archive has no {root}/data.pkl: not saved by torch.save".into()),
        _ => {
            return Err(format!(
                "the zip archive has {} data.pkl entries",
                pickles.len()
            ))
        }
    };
    if let Ok(order) = archive.read(&format!("{root}byteorder")) {
        if order != b"little" {
            return Err(format!(
                "byte order '{}' is not supported (little-endian only)",
                String::from_utf8_lossy(order)
            ));
        }
    }
    let program = pickle::unpickle(archive.read(&format!("{root}data.pkl"))?)?;
    materialise(
        &program,
        |key| archive.read(&format!("{root}data/{key}")),
        "zip",
    )
}

fn parse_legacy(bytes: &[u8]) -> Result<PthFile, String> {
    let mut at = 0;
    let mut next = |what: &str| -> Result<Unpickled, String> {
        let p = pickle::unpickle(&bytes[at..]).map_err(|e| format!("{what} pickle: {e}"))?;
        at += p.end;
        Ok(p)
    };
    let magic = next("magic number")?;
    if *magic.get(magic.root) != Object::BigInt(LEGACY_MAGIC_NUMBER.to_vec()) {
        return Err("legacy stream without torch's magic number".into());
    }
    let protocol = next("protocol version")?;
    if *protocol.get(protocol.root) != Object::Int(1001) {
        return Err("legacy stream of an unknown protocol version (1001 expected)".into());
    }
    let info = next("system info")?;
    let little = match info.get(info.root) {
        Object::Dict(items) => items.iter().any(|&(k, v)| {
            *info.get(k) == Object::Str("little_endian".into())
                && *info.get(v) == Object::Bool(true)
        }),
        _ => false,
    };
    if !little {
        return Err("legacy stream not written little-endian".into());
    }
    let program = next("object")?;
    let keys_pickle = next("storage keys")?;
    let keys: Vec<String> = match keys_pickle.get(keys_pickle.root) {
        Object::List(ids) => ids
            .iter()
            .map(|&i| match keys_pickle.get(i) {
                Object::Str(s) => Ok(s.clone()),
                _ => Err("storage key that is not a string".to_string()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("the storage-key pickle is not a list".into()),
    };
    // The storages' element types come from the object pickle's persistent ids.
    let types: HashMap<&str, StorageType> = program
        .objects
        .iter()
        .filter_map(|o| match o {
            Object::Storage { dtype, key, .. } => Some((key.as_str(), *dtype)),
            _ => None,
        })
        .collect();
    let mut data: HashMap<&str, &[u8]> = HashMap::new();
    for key in &keys {
        let dtype = types
            .get(key.as_str())
            .ok_or_else(|| format!("storage '{key}' is listed but no tensor uses it"))?;
        let count = bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
            .ok_or_else(|| format!("truncated: storage '{key}' has no element count"))?;
        let len = count
            .checked_mul(dtype.size() as u64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= bytes.len() - at - 8)
            .ok_or_else(|| {
                format!("truncated: storage '{key}' declares {count} elements, more than the file holds")
            })?;
        data.insert(key, &bytes[at + 8..at + 8 + len]);
        at += 8 + len;
    }
    materialise(
        &program,
        |key| {
            data.get(key)
                .copied()
                .ok_or_else(|| format!("storage '{key}' is not in the file"))
        },
        "legacy",
    )
}

/// Finds the tensors of nested dicts and copies each view out of its storage.
fn materialise<'a>(
    p: &Unpickled,
    storage_bytes: impl Fn(&str) -> Result<&'a [u8], String>,
    container: &'static str,
) -> Result<PthFile, String> {
    let mut found = Vec::new();
    let mut budget = 1_000_000usize;
    collect(p, p.root, String::new(), 0, &mut budget, &mut found)?;
    let mut stored = 0u64;
    let mut seen: HashMap<&str, &[u8]> = HashMap::new();
    let mut views = Vec::with_capacity(found.len());
    for (name, t) in &found {
        let Object::Storage { dtype, key, numel } = p.get(t.storage) else {
            unreachable!("checked by the unpickler")
        };
        let bytes = match seen.get(key.as_str()) {
            Some(b) => *b,
            None => {
                let b = storage_bytes(key).map_err(|e| format!("tensor '{name}': {e}"))?;
                let want = numel.checked_mul(dtype.size() as u64);
                if want != Some(b.len() as u64) {
                    return Err(format!(
                        "tensor '{name}': storage '{key}' declares {numel} elements of {} bytes, the file holds {} bytes",
                        dtype.size(),
                        b.len()
                    ));
                }
                stored += numel;
                seen.insert(key, b);
                b
            }
        };
        let count = view_len(t, *numel).map_err(|e| format!("tensor '{name}': {e}"))?;
        views.push((name, *dtype, bytes, count));
    }
    let total: u64 = views.iter().map(|v| v.3).sum();
    if total > MAX_EXPANSION * stored + 1024 {
        return Err(format!(
            "the tensors hold {total} elements but the file stores {stored}: views that repeat elements this much are refused"
        ));
    }
    let mut out = PthFile {
        tensors: Vec::new(),
        skipped: Vec::new(),
        container,
    };
    for ((name, dtype, bytes, count), (_, t)) in views.into_iter().zip(&found) {
        if count == 0 {
            out.skipped.push(name.clone());
            continue;
        }
        match read_view(t, dtype, bytes) {
            Some(v) => out.tensors.push((
                name.clone(),
                v.map_err(|e| format!("tensor '{name}': {e}"))?,
            )),
            None => out.skipped.push(name.clone()),
        }
    }
    Ok(out)
}

/// Walks dicts (string or integer keys) down to tensors.
fn collect(
    p: &Unpickled,
    id: usize,
    prefix: String,
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<(String, TensorRef)>,
) -> Result<(), String> {
    if *budget == 0 || depth > 32 {
        return Err("the object graph is too large or too deep for a checkpoint".into());
    }
    *budget -= 1;
    match p.get(id) {
        Object::Tensor(t) => out.push((prefix, t.clone())),
        Object::Dict(items) => {
            for &(k, v) in items {
                let key = match p.get(k) {
                    Object::Str(s) => s.clone(),
                    Object::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                collect(p, v, name, depth + 1, budget, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Elements of the view, after checking that every one lies inside the storage.
fn view_len(t: &TensorRef, storage_numel: u64) -> Result<u64, String> {
    let mut count = 1u64;
    let mut last = t.offset as u64;
    for (&s, &st) in t.size.iter().zip(&t.stride) {
        count = count
            .checked_mul(s as u64)
            .ok_or("element count overflows")?;
        if s > 0 {
            last = (s as u64 - 1)
                .checked_mul(st as u64)
                .and_then(|x| x.checked_add(last))
                .ok_or("extent overflows")?;
        }
    }
    if count > 0 && last >= storage_numel {
        return Err(format!(
            "view (offset {}, size {:?}, stride {:?}) reaches element {last} of a storage of {storage_numel}",
            t.offset, t.size, t.stride
        ));
    }
    Ok(count)
}

/// The view's elements in row-major order; None for integer and boolean storages.
fn read_view(t: &TensorRef, dtype: StorageType, bytes: &[u8]) -> Option<Result<Tensor, String>> {
    let index = strided_indices(t);
    let e = dtype.size();
    let at = |i: usize| &bytes[i * e..(i + 1) * e];
    let tensor = match dtype {
        StorageType::F64 => Tensor::from_vec(
            index
                .map(|i| f64::from_le_bytes(at(i).try_into().expect("8")))
                .collect::<Vec<_>>(),
            &t.size,
        ),
        StorageType::F32 => Tensor::from_vec(
            index
                .map(|i| f32::from_le_bytes(at(i).try_into().expect("4")))
                .collect::<Vec<_>>(),
            &t.size,
        ),
        StorageType::F16 => Tensor::from_vec(
            index
                .map(|i| half::f16::from_le_bytes([at(i)[0], at(i)[1]]).to_f32())
                .collect::<Vec<_>>(),
            &t.size,
        ),
        StorageType::BF16 => Tensor::from_vec(
            index
                .map(|i| half::bf16::from_le_bytes([at(i)[0], at(i)[1]]).to_f32())
                .collect::<Vec<_>>(),
            &t.size,
        ),
        _ => return None,
    };
    Some(tensor.map_err(|e| e.to_string()))
}

/// Storage indices of a view's elements in row-major order (checked by [`view_len`] first).
fn strided_indices(t: &TensorRef) -> impl Iterator<Item = usize> + '_ {
    let n: usize = t.size.iter().product();
    let mut pos = vec![0usize; t.size.len()];
    (0..n).map(move |k| {
        if k > 0 {
            for d in (0..pos.len()).rev() {
                pos[d] += 1;
                if pos[d] < t.size[d] {
                    break;
                }
                pos[d] = 0;
            }
        }
        t.offset + pos.iter().zip(&t.stride).map(|(p, s)| p * s).sum::<usize>()
    })
}
