//! The PTX entry signature of a kernel as its Rust launch passes the arguments, and the parser
//! that reads the signatures NVRTC compiled (`.entry name(.param .u64 ..., ...)`), so a test can
//! check every launch against the PTX without a GPU: an argument of the wrong width would be a
//! silent misread on the device.

/// One kernel argument as PTX declares it: a device pointer or `long long` (`.u64` / `.s64`),
/// an `int` (`.u32` / `.s32`), a `float` (`.f32`), a TMA descriptor passed by value
/// (`__grid_constant__ CUtensorMap`: `.param .align 64 .b8 name[128]`), or a `#[repr(C)]`
/// parameter struct passed by value (`Bytes(size_of::<S>())`: `.param .align 8 .b8 name[N]`, so the
/// check also compares the Rust struct's size with the C one's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    Ptr,
    I64,
    I32,
    F32,
    TensorMap,
    Bytes(usize),
}

impl Param {
    /// The PTX parameter type's width class: pointers and 64-bit integers are both 8-byte `.b64`
    /// words to the launch.
    fn ptx_class(self) -> String {
        match self {
            Param::Ptr | Param::I64 => "b64".into(),
            Param::I32 => "b32".into(),
            Param::F32 => "f32".into(),
            Param::TensorMap => "b8[128]".into(),
            Param::Bytes(n) => format!("b8[{n}]"),
        }
    }
}

/// A kernel name with the arguments its launch pushes, in order.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub name: &'static str,
    pub params: &'static [Param],
}

impl Entry {
    pub const fn new(name: &'static str, params: &'static [Param]) -> Entry {
        Entry { name, params }
    }
}

/// Every `.entry` of a PTX text with its parameters' width classes ("b64", "b32", "f32", "b8[N]"
/// for an N-byte aggregate, or the raw PTX type for anything else).
pub fn ptx_entries(ptx: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = ptx;
    while let Some(at) = rest.find(".entry ") {
        let after = &rest[at + ".entry ".len()..];
        let Some(open) = after.find('(') else { break };
        let name = after[..open].trim().to_string();
        let close = after[open..].find(')').map_or(after.len(), |c| open + c);
        let params = after[open + 1..close]
            .split(',')
            .filter(|p| p.contains(".param"))
            .map(|p| {
                let words: Vec<&str> = p.split_whitespace().collect();
                // an aggregate by value: `.param .align 64 .b8 name[128]`
                let dims = words.last().and_then(|w| w.find('[').map(|i| &w[i..]));
                if let (Some(dims), true) = (dims, words.contains(&".b8")) {
                    return format!("b8{dims}");
                }
                let ty = words
                    .iter()
                    .find(|w| w.starts_with('.') && **w != ".param" && **w != ".align")
                    .unwrap_or(&"?");
                match *ty {
                    ".u64" | ".s64" | ".b64" => "b64".to_string(),
                    ".u32" | ".s32" | ".b32" => "b32".to_string(),
                    ".f32" => "f32".to_string(),
                    other => other.to_string(),
                }
            })
            .collect();
        out.push((name, params));
        rest = &after[close..];
    }
    out
}

/// Checks `entries` against the PTX of their source: each exists with exactly those parameter
/// widths, and the PTX has no entry the list lacks. Errors name the kernel.
pub fn check_entries(ptx: &str, entries: &[Entry]) -> Result<(), String> {
    let found = ptx_entries(ptx);
    for e in entries {
        let Some((_, params)) = found.iter().find(|(n, _)| n == e.name) else {
            return Err(format!("kernel {} is not in the PTX", e.name));
        };
        let want: Vec<String> = e.params.iter().map(|p| p.ptx_class()).collect();
        if *params != want {
            return Err(format!(
                "kernel {}: the PTX takes {params:?}, the launch passes {want:?}",
                e.name
            ));
        }
    }
    if let Some((n, _)) = found
        .iter()
        .find(|(n, _)| !entries.iter().any(|e| e.name == n))
    {
        return Err(format!(
            "kernel {n} is in the PTX but not in the launch table"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTX: &str = "
.visible .entry k1(
\t.param .u64 k1_param_0,
\t.param .u32 k1_param_1,
\t.param .f32 k1_param_2
)
{ ret; }
.visible .entry k2()
{ ret; }
.visible .entry k3(
\t.param .align 64 .b8 k3_param_0[128],
\t.param .u32 k3_param_1
)
{ ret; }";

    #[test]
    fn parses_entries_and_finds_mismatches() {
        let e = ptx_entries(PTX);
        assert_eq!(
            e[0],
            ("k1".into(), vec!["b64".into(), "b32".into(), "f32".into()])
        );
        assert_eq!(e[1], ("k2".into(), vec![]));
        assert_eq!(e[2], ("k3".into(), vec!["b8[128]".into(), "b32".into()]));
        let good = [
            Entry::new("k1", &[Param::Ptr, Param::I32, Param::F32]),
            Entry::new("k2", &[]),
            Entry::new("k3", &[Param::TensorMap, Param::I32]),
        ];
        assert_eq!(check_entries(PTX, &good), Ok(()));
        let wide = [
            Entry::new("k1", &[Param::Ptr, Param::I64, Param::F32]),
            good[1],
            good[2],
        ];
        assert!(check_entries(PTX, &wide).unwrap_err().contains("k1"));
        // A parameter struct by value is its size in bytes (the TensorMap is one of 128).
        let by_size = [
            good[0],
            good[1],
            Entry::new("k3", &[Param::Bytes(128), Param::I32]),
        ];
        assert_eq!(check_entries(PTX, &by_size), Ok(()));
        let short = [
            good[0],
            good[1],
            Entry::new("k3", &[Param::Bytes(120), Param::I32]),
        ];
        assert!(check_entries(PTX, &short).unwrap_err().contains("k3"));
        let missing = [good[0], good[2]];
        assert!(check_entries(PTX, &missing).unwrap_err().contains("k2"));
    }
}
