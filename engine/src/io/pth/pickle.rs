//! A restricted unpickler: rebuilds the objects of a PyTorch checkpoint's pickle without running
//! anything.
//!
//! A pickle is a program for a stack machine; Python's unpickler imports any `module.name` the
//! program asks for (GLOBAL / STACK_GLOBAL) and calls it (REDUCE / NEWOBJ / BUILD), which is how a
//! `.pth` file can run `os.system`. Here every object is plain data in an arena, globals are
//! looked up in a short list of names and turned into inert tags, and the only "calls" are the
//! few constructors PyTorch uses for state dicts, interpreted by this file:
//! `torch._utils._rebuild_tensor_v2` (a tensor view: storage, offset, size, stride),
//! `torch._utils._rebuild_parameter` (a parameter = its tensor), `collections.OrderedDict()`
//! (an empty dict) and `argparse.Namespace` (an inert record; DINO stores its arguments so).
//! Any other global or opcode stops with an error that names it. Persistent ids (the storages of
//! the zip and legacy formats) become storage references, resolved by the caller.
//!
//! Memory stays bounded by the input: each opcode adds at most one object, lengths are checked
//! against the bytes left before anything is allocated, and shared objects are shared by id,
//! never copied. Opcodes: Python's `Lib/pickletools.py`; the objects torch writes:
//! `torch/serialization.py` and `torch/_utils.py`.

use std::collections::HashMap;

/// Index of an object in the arena.
pub type Id = usize;

/// Element types of the storages the reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl StorageType {
    pub fn size(self) -> usize {
        match self {
            StorageType::F64 | StorageType::I64 => 8,
            StorageType::F32 | StorageType::I32 => 4,
            StorageType::F16 | StorageType::BF16 => 2,
            StorageType::U8 | StorageType::Bool => 1,
        }
    }
}

/// The globals a checkpoint may name. Looked up, never imported or called.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Global {
    RebuildTensorV2,
    RebuildParameter,
    OrderedDict,
    Storage(StorageType),
    Namespace,
}

/// The accepted globals, for error messages and docs/pth.md.
pub const ACCEPTED_GLOBALS: &str = "torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, \
collections.OrderedDict, argparse.Namespace, torch.{Float,Half,BFloat16,Double,Long,Int,Byte,Bool}Storage";

fn lookup(module: &str, name: &str) -> Result<Global, String> {
    let storage = |t| Ok(Global::Storage(t));
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => Ok(Global::RebuildParameter),
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("argparse", "Namespace") => Ok(Global::Namespace),
        ("torch", "FloatStorage") => storage(StorageType::F32),
        ("torch", "HalfStorage") => storage(StorageType::F16),
        ("torch", "BFloat16Storage") => storage(StorageType::BF16),
        ("torch", "DoubleStorage") => storage(StorageType::F64),
        ("torch", "LongStorage") => storage(StorageType::I64),
        ("torch", "IntStorage") => storage(StorageType::I32),
        ("torch", "ByteStorage") => storage(StorageType::U8),
        ("torch", "BoolStorage") => storage(StorageType::Bool),
        _ => Err(format!(
            "global '{module}.{name}' is not allowed (loading it could run code); the reader accepts only {ACCEPTED_GLOBALS}"
        )),
    }
}

/// A view of a storage: `_rebuild_tensor_v2`'s arguments, not yet checked against the data.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: Id,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as pickle's little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    /// A persistent id ('storage', type, key, location, numel, ...): bytes held outside the pickle.
    Storage {
        dtype: StorageType,
        key: String,
        numel: u64,
    },
    Tensor(TensorRef),
    /// An `argparse.Namespace`: its state is kept and never interpreted.
    Record(Option<Id>),
}

/// The objects a pickle built; `root` is the one STOP returned.
pub struct Unpickled {
    pub objects: Vec<Object>,
    pub root: Id,
    /// Bytes consumed, up to and including STOP (the legacy format concatenates pickles).
    pub end: usize,
}

impl Unpickled {
    pub fn get(&self, id: Id) -> &Object {
        &self.objects[id]
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    objects: Vec<Object>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| {
            format!(
                "pickle truncated: {n} bytes wanted at offset {} of {}",
                self.pos,
                self.data.len()
            )
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn len_u64(&mut self) -> Result<usize, String> {
        let n = u64::from_le_bytes(self.take(8)?.try_into().expect("8"));
        usize::try_from(n).map_err(|_| format!("pickle length {n} is too large"))
    }

    fn push(&mut self, o: Object) -> Id {
        self.objects.push(o);
        let id = self.objects.len() - 1;
        self.stack.push(id);
        id
    }

    fn pop(&mut self) -> Result<Id, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(format!("pickle stack underflow at offset {}", self.pos));
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn top(&self) -> Result<Id, String> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| format!("pickle stack empty at offset {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, String> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| format!("pickle has no MARK before offset {}", self.pos))?;
        Ok(self.stack.split_off(m))
    }

    fn string(&self, id: Id) -> Result<&str, String> {
        match &self.objects[id] {
            Object::Str(s) => Ok(s),
            o => Err(format!("expected a string, found {}", kind(o))),
        }
    }

    fn int(&self, id: Id, what: &str) -> Result<usize, String> {
        match self.objects[id] {
            Object::Int(v) if v >= 0 => Ok(v as usize),
            ref o => Err(format!(
                "{what}: expected a non-negative integer, found {}",
                kind(o)
            )),
        }
    }

    fn ints(&self, id: Id, what: &str) -> Result<Vec<usize>, String> {
        match &self.objects[id] {
            Object::Tuple(v) => v.iter().map(|&i| self.int(i, what)).collect(),
            o => Err(format!("{what}: expected a tuple, found {}", kind(o))),
        }
    }

    fn tuple(&self, id: Id, what: &str) -> Result<Vec<Id>, String> {
        match &self.objects[id] {
            Object::Tuple(v) => Ok(v.clone()),
            o => Err(format!("{what}: expected a tuple, found {}", kind(o))),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), String> {
        let g = lookup(module, name)?;
        self.push(Object::Global(g));
        Ok(())
    }

    /// ('storage', StorageType, key, location, numel[, view metadata]).
    fn persistent(&mut self, pid: Id) -> Result<Object, String> {
        let t = self.tuple(pid, "persistent id")?;
        if t.len() < 5 || self.string(t[0]).ok() != Some("storage") {
            return Err("persistent id is not ('storage', type, key, location, numel)".into());
        }
        let dtype = match self.objects[t[1]] {
            Object::Global(Global::Storage(d)) => d,
            ref o => return Err(format!("persistent id names {} as a storage type", kind(o))),
        };
        if t.len() == 6 && self.objects[t[5]] != Object::None {
            return Err("legacy storage views (view metadata) are not supported".into());
        }
        Ok(Object::Storage {
            dtype,
            key: self.string(t[2])?.to_string(),
            numel: self.int(t[4], "storage size")? as u64,
        })
    }

    fn reduce(&mut self, callable: Id, args: Id) -> Result<Object, String> {
        let a = self.tuple(args, "REDUCE arguments")?;
        match self.objects[callable] {
            Object::Global(Global::RebuildTensorV2) => {
                if !(6..=7).contains(&a.len()) {
                    return Err(format!("_rebuild_tensor_v2 with {} arguments", a.len()));
                }
                if !matches!(self.objects[a[0]], Object::Storage { .. }) {
                    return Err("_rebuild_tensor_v2 without a storage".into());
                }
                let size = self.ints(a[2], "tensor size")?;
                let stride = self.ints(a[3], "tensor stride")?;
                if size.len() != stride.len() {
                    return Err(format!(
                        "tensor size {size:?} and stride {stride:?} differ in rank"
                    ));
                }
                Ok(Object::Tensor(TensorRef {
                    storage: a[0],
                    offset: self.int(a[1], "storage offset")?,
                    size,
                    stride,
                }))
            }
            Object::Global(Global::RebuildParameter) => {
                match a.first().map(|&i| &self.objects[i]) {
                    Some(t @ Object::Tensor(_)) => Ok(t.clone()),
                    _ => Err("_rebuild_parameter without a tensor".into()),
                }
            }
            Object::Global(Global::OrderedDict) if a.is_empty() => Ok(Object::Dict(Vec::new())),
            ref o => Err(format!("REDUCE (a call) of {} is not allowed", kind(o))),
        }
    }

    fn build(&mut self, target: Id, state: Id) -> Result<(), String> {
        match &mut self.objects[target] {
            // OrderedDict's state is its `_metadata` attribute (module versions): not needed.
            Object::Dict(_) => Ok(()),
            Object::Record(s) => {
                *s = Some(state);
                Ok(())
            }
            o => Err(format!(
                "BUILD (setting state) on {} is not allowed",
                kind(o)
            )),
        }
    }

    fn set_items(&mut self, items: Vec<Id>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        let target = self.top()?;
        match &mut self.objects[target] {
            Object::Dict(d) => {
                d.extend(items.chunks_exact(2).map(|p| (p[0], p[1])));
                Ok(())
            }
            o => Err(format!("SETITEM(S) on {}", kind(o))),
        }
    }

    fn append(&mut self, items: Vec<Id>) -> Result<(), String> {
        let target = self.top()?;
        match &mut self.objects[target] {
            Object::List(l) => {
                l.extend(items);
                Ok(())
            }
            o => Err(format!("APPEND(S) on {}", kind(o))),
        }
    }

    fn memo_put(&mut self, key: u32) -> Result<(), String> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), String> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| format!("pickle memo has no entry {key}"))?;
        self.stack.push(id);
        Ok(())
    }

    fn utf8(&mut self, n: usize) -> Result<(), String> {
        let s = std::str::from_utf8(self.take(n)?)
            .map_err(|_| "pickle string is not UTF-8".to_string())?
            .to_string();
        self.push(Object::Str(s));
        Ok(())
    }

    /// Runs one opcode; Some(root) at STOP.
    fn step(&mut self) -> Result<Option<Id>, String> {
        let at = self.pos;
        let op = self.u8()?;
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} is unknown"));
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: a length hint
            }
            b'.' => return self.pop().map(Some),
            b'(' => self.marks.push(self.stack.len()),
            b'}' => {
                self.push(Object::Dict(Vec::new()));
            }
            b']' => {
                self.push(Object::List(Vec::new()));
            }
            b')' => {
                self.push(Object::Tuple(Vec::new()));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Object::Tuple(items));
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Object::List(items));
            }
            b'd' => {
                let items = self.pop_mark()?;
                if !items.len().is_multiple_of(2) {
                    return Err("DICT with an odd number of values".into());
                }
                self.push(Object::Dict(
                    items.chunks_exact(2).map(|p| (p[0], p[1])).collect(),
                ));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Object::Tuple(items));
            }
            b'N' => {
                self.push(Object::None);
            }
            0x88 | 0x89 => {
                self.push(Object::Bool(op == 0x88));
            }
            b'J' => {
                let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4"));
                self.push(Object::Int(i64::from(v)));
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Object::Int(i64::from(v)));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.take(2)?.try_into().expect("2"));
                self.push(Object::Int(i64::from(v)));
            }
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    usize::from(self.u8()?)
                } else {
                    self.u32()? as usize
                };
                let bytes = self.take(n)?;
                let o = if n <= 8 {
                    let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        0xFF
                    } else {
                        0
                    };
                    let mut b = [fill; 8];
                    b[..n].copy_from_slice(bytes);
                    Object::Int(i64::from_le_bytes(b))
                } else {
                    Object::BigInt(bytes.to_vec())
                };
                self.push(o);
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8"));
                self.push(Object::Float(v));
            }
            b'X' => {
                let n = self.u32()? as usize;
                self.utf8(n)?;
            }
            0x8c => {
                let n = usize::from(self.u8()?);
                self.utf8(n)?;
            }
            0x8d => {
                let n = self.len_u64()?;
                self.utf8(n)?;
            }
            b'C' | b'B' | 0x8e => {
                let n = match op {
                    b'C' => usize::from(self.u8()?),
                    b'B' => self.u32()? as usize,
                    _ => self.len_u64()?,
                };
                let b = self.take(n)?.to_vec();
                self.push(Object::Bytes(b));
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(&module, &name)?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (m, n) = (
                    self.string(module)?.to_string(),
                    self.string(name)?.to_string(),
                );
                self.global(&m, &n)?;
            }
            b'q' => {
                let k = self.u8()?;
                self.memo_put(u32::from(k))?;
            }
            b'r' => {
                let k = self.u32()?;
                self.memo_put(k)?;
            }
            0x94 => {
                let k = self.memo.len() as u32;
                self.memo_put(k)?;
            }
            b'h' => {
                let k = self.u8()?;
                self.memo_get(u32::from(k))?;
            }
            b'j' => {
                let k = self.u32()?;
                self.memo_get(k)?;
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?;
                self.stack.push(top);
            }
            b'a' => {
                let v = self.pop()?;
                self.append(vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                let o = self.persistent(pid)?;
                self.push(o);
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let o = self.reduce(callable, args)?;
                self.push(o);
            }
            0x81 => {
                let args = self.pop()?;
                let class = self.pop()?;
                let empty = self.tuple(args, "NEWOBJ arguments")?.is_empty();
                if !(empty && self.objects[class] == Object::Global(Global::Namespace)) {
                    return Err(format!(
                        "NEWOBJ (creating an object) of {} is not allowed",
                        kind(&self.objects[class])
                    ));
                }
                self.push(Object::Record(None));
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
            }
            _ => {
                return Err(format!(
                    "pickle opcode 0x{op:02x} ('{}') at offset {at} is not one the reader accepts",
                    op as char
                ))
            }
        }
        Ok(None)
    }

    /// A newline-terminated ASCII argument (GLOBAL's module and name).
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or("GLOBAL argument without a newline in 256 bytes")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
}

/// A short description of an object for error messages.
pub fn kind(o: &Object) -> String {
    match o {
        Object::Global(g) => format!("the global {g:?}"),
        Object::Str(s) => format!("the string '{}'", s.chars().take(40).collect::<String>()),
        Object::Tensor(_) => "a tensor".into(),
        Object::Storage { .. } => "a storage".into(),
        other => {
            let d = format!("{other:?}");
            d.split(['(', '{', ' '])
                .next()
                .unwrap_or("an object")
                .to_lowercase()
        }
    }
}

/// Runs the pickle at the start of `data` up to its STOP.
pub fn unpickle(data: &[u8]) -> Result<Unpickled, String> {
    let mut m = Machine {
        data,
        pos: 0,
        objects: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        if m.pos >= data.len() {
            return Err("pickle ends without STOP (truncated)".into());
        }
        if let Some(root) = m.step()? {
            return Ok(Unpickled {
                objects: m.objects,
                root,
                end: m.pos,
            });
        }
    }
}
