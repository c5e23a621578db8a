//! Hostile and broken `.pth` files are refused with an error that says why, and nothing in them
//! runs (docs/pth.md). The files are built here byte by byte: a zip container as torch.save
//! writes it (stored entries, CRC-32) around hand-written pickles.

use dinonat_engine::io::load_tensor_file;
use dinonat_engine::io::pth::parse_pth;

/// A zip archive of stored entries (PKWARE APPNOTE 4.3), as torch.save writes them.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(data);
        let mut common = Vec::new();
        common.extend_from_slice(&20u16.to_le_bytes()); // version needed
        common.extend_from_slice(&0u16.to_le_bytes()); // flags
        common.extend_from_slice(&0u16.to_le_bytes()); // stored
        common.extend_from_slice(&[0; 4]); // time, date
        common.extend_from_slice(&crc.to_le_bytes());
        common.extend_from_slice(&(data.len() as u32).to_le_bytes());
        common.extend_from_slice(&(data.len() as u32).to_le_bytes());
        common.extend_from_slice(&(name.len() as u16).to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes()); // extra length
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&common);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend_from_slice(&common);
        central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&[0; 4]); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn short_str(s: &str) -> Vec<u8> {
    let mut v = vec![0x8c, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// `{'w': _rebuild_tensor_v2(storage '0' of `numel` floats, offset, (size,), (1,), False,
/// OrderedDict())}` in protocol 2, as torch writes a state dict.
fn tensor_pickle(numel: u8, offset: u8, size: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x02, b'}', b'X', 1, 0, 0, 0, b'w'];
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\n");
    p.extend_from_slice(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK");
    p.extend_from_slice(&[
        numel, b't', b'Q', b'K', offset, b'K', size, 0x85, b'K', 1, 0x85, 0x89,
    ]);
    p.extend_from_slice(b"ccollections\nOrderedDict\n)RtRs.");
    p
}

fn archive(pickle: &[u8], storage: &[u8]) -> Vec<u8> {
    zip(&[
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", storage),
    ])
}

fn floats(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (i as f32 + 0.5).to_le_bytes())
        .collect()
}

fn refused(bytes: &[u8], wanted: &[&str]) -> String {
    let e = match parse_pth(bytes) {
        Ok(f) => panic!(
            "accepted: {:?}",
            f.tensors.iter().map(|t| &t.0).collect::<Vec<_>>()
        ),
        Err(e) => e,
    };
    for w in wanted {
        assert!(e.contains(w), "'{w}' not in: {e}");
    }
    e
}

#[test]
fn the_hand_built_archive_is_read_when_it_is_honest() {
    let f = parse_pth(&archive(&tensor_pickle(4, 1, 3), &floats(4))).unwrap();
    assert_eq!(f.tensors.len(), 1);
    assert_eq!(f.tensors[0].0, "w");
    assert_eq!(f.tensors[0].1.to_vec_f64(), [1.5, 2.5, 3.5]);
    // a tensor with no elements is named, not loaded
    let f = parse_pth(&archive(&tensor_pickle(4, 0, 0), &floats(4))).unwrap();
    assert!(f.tensors.is_empty() && f.skipped == ["w"]);
}

#[test]
fn os_system_through_global_and_reduce_is_refused() {
    let mut p = b"\x80\x02cposix\nsystem\nX\x1a\x00\x00\x00touch /tmp/dinonat-pwned-1".to_vec();
    p.extend_from_slice(b"\x85R.");
    refused(
        &archive(&p, &floats(4)),
        &["global 'posix.system' is not allowed", "_rebuild_tensor_v2"],
    );
    assert!(!std::path::Path::new("/tmp/dinonat-pwned-1").exists());
}

#[test]
fn os_system_through_stack_global_is_refused() {
    let mut p = vec![0x80, 0x04];
    p.extend(short_str("posix"));
    p.extend(short_str("system"));
    p.push(0x93);
    p.extend(short_str("touch /tmp/dinonat-pwned-2"));
    p.extend_from_slice(b"\x85R.");
    refused(
        &archive(&p, &floats(4)),
        &["global 'posix.system' is not allowed"],
    );
    assert!(!std::path::Path::new("/tmp/dinonat-pwned-2").exists());
}

#[test]
fn a_global_outside_the_list_is_refused_by_name() {
    let p = b"\x80\x02cbuiltins\ngetattr\n.".to_vec();
    refused(
        &archive(&p, &floats(4)),
        &["'builtins.getattr' is not allowed"],
    );
    // an allowed global may not be called with other arguments or used as something else
    let p = b"\x80\x02ctorch\nFloatStorage\n)R.".to_vec();
    refused(
        &archive(&p, &floats(4)),
        &["REDUCE (a call) of the global Storage(F32)"],
    );
}

#[test]
fn an_opcode_outside_the_list_is_refused_by_name() {
    // INST (0x69 'i') imports and calls in one opcode
    let p = b"\x80\x02(iposix\nsystem\n.".to_vec();
    refused(&archive(&p, &floats(4)), &["opcode 0x69 ('i')"]);
}

#[test]
fn a_storage_offset_or_extent_past_the_end_is_refused() {
    refused(
        &archive(&tensor_pickle(4, 4, 1), &floats(4)),
        &["tensor 'w'", "reaches element 4 of a storage of 4"],
    );
    refused(
        &archive(&tensor_pickle(4, 1, 4), &floats(4)),
        &["reaches element 4"],
    );
}

#[test]
fn an_oversized_declared_size_is_refused_before_allocating() {
    // the storage declares 200 floats, the archive holds 4
    refused(
        &archive(&tensor_pickle(200, 0, 4), &floats(4)),
        &["declares 200 elements", "holds 16 bytes"],
    );
    // a string declared 2^60 bytes long (BINUNICODE8)
    let mut p = vec![0x80, 0x04, 0x8d];
    p.extend_from_slice(&(1u64 << 60).to_le_bytes());
    refused(&archive(&p, &floats(4)), &["pickle truncated"]);
    // a zip that declares more entries than its central directory can hold
    let mut z = archive(&tensor_pickle(4, 0, 4), &floats(4));
    let n = z.len();
    z[n - 12..n - 10].copy_from_slice(&60000u16.to_le_bytes());
    refused(&z, &["declares 60000 entries"]);
}

#[test]
fn every_truncation_of_a_zip_is_refused_without_a_panic() {
    let z = archive(&tensor_pickle(4, 0, 4), &floats(4));
    for len in 4..z.len() {
        refused(&z[..len], &[]);
    }
    refused(&z[..z.len() - 30], &["end-of-central-directory"]);
}

#[test]
fn a_damaged_entry_fails_its_crc() {
    let mut z = archive(&tensor_pickle(4, 0, 4), &floats(4));
    let at = z
        .windows(4)
        .position(|w| w == 0.5f32.to_le_bytes())
        .unwrap();
    z[at] ^= 1;
    refused(&z, &["CRC-32 mismatch"]);
}

#[test]
fn the_error_names_the_file() {
    let dir = std::env::temp_dir().join(format!("dinonat-pth-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("evil.pth");
    std::fs::write(&path, archive(b"\x80\x02cposix\nsystem\n.", &floats(4))).unwrap();
    let e = load_tensor_file(&path).unwrap_err().to_string();
    assert!(e.contains("evil.pth") && e.contains("posix.system"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
