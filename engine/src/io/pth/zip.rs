//! The zip container that `torch.save` writes since PyTorch 1.6: a plain zip archive whose entries
//! are stored uncompressed (`{root}/data.pkl`, `{root}/data/{key}`, `{root}/byteorder`, ...).
//!
//! Only what is needed to find stored entries is read: the end-of-central-directory record (with
//! its ZIP64 form for archives past 4 GiB), the central directory, and each entry's local header.
//! Every offset and size is checked against the archive's length before it is used, entries that
//! are compressed or encrypted are refused, and an entry's CRC-32 is checked when it is read, so a
//! truncated or altered archive stops with an error instead of yielding wrong bytes.
//! Format: PKWARE's APPNOTE.TXT, sections 4.3.7 (local header), 4.3.12 (central directory),
//! 4.3.14-16 (ZIP64 and end records).

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_RECORD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_END_RECORD: u32 = 0x0606_4b50;

/// One stored entry: where its bytes lie in the archive.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    start: usize,
    pub size: usize,
    crc32: u32,
}

/// An archive held in memory, with its entries listed from the central directory.
pub struct ZipArchive<'a> {
    bytes: &'a [u8],
    pub entries: Vec<Entry>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated zip: a 2-byte field at {at} lies past the end"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| format!("truncated zip: a 4-byte field at {at} lies past the end"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| format!("truncated zip: an 8-byte field at {at} lies past the end"))
}

fn to_usize(v: u64, what: &str) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{what} {v} does not fit in memory"))
}

/// (entry count, central directory offset, its size) from the end record, ZIP64 when flagged.
fn central_directory(b: &[u8]) -> Result<(u64, u64, u64, usize), String> {
    if b.len() < 22 {
        return Err(format!(
            "truncated zip: {} bytes, shorter than an end record",
            b.len()
        ));
    }
    // The end record is the last 22 bytes plus a comment of at most 65535 bytes.
    let lowest = b.len().saturating_sub(22 + 65_535);
    let end = (lowest..=b.len() - 22)
        .rev()
        .find(|&i| u32_at(b, i) == Ok(END_RECORD))
        .ok_or("no end-of-central-directory record (a truncated or non-zip file)")?;
    let mut count = u64::from(u16_at(b, end + 10)?);
    let mut size = u64::from(u32_at(b, end + 12)?);
    let mut offset = u64::from(u32_at(b, end + 16)?);
    if count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
        let locator = end
            .checked_sub(20)
            .ok_or("ZIP64 archive without its locator")?;
        if u32_at(b, locator)? != ZIP64_LOCATOR {
            return Err("ZIP64 archive without its locator".into());
        }
        let record = to_usize(u64_at(b, locator + 8)?, "ZIP64 end record offset")?;
        if u32_at(b, record)? != ZIP64_END_RECORD {
            return Err(format!("no ZIP64 end record at {record}"));
        }
        count = u64_at(b, record + 32)?;
        size = u64_at(b, record + 40)?;
        offset = u64_at(b, record + 48)?;
    }
    Ok((count, offset, size, end))
}

impl<'a> ZipArchive<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<ZipArchive<'a>, String> {
        let (count, offset, size, end) = central_directory(bytes)?;
        let cd_start = to_usize(offset, "central directory offset")?;
        let cd_end = cd_start
            .checked_add(to_usize(size, "central directory size")?)
            .filter(|&e| e <= end)
            .ok_or_else(|| {
                format!("truncated zip: the central directory ({size} bytes at {offset}) runs past the end record at {end}")
            })?;
        // Each central header takes at least 46 bytes: a larger count is a lie, not an allocation.
        if count > ((cd_end - cd_start) / 46) as u64 {
            return Err(format!(
                "the zip declares {count} entries in a {size}-byte central directory"
            ));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut at = cd_start;
        for _ in 0..count {
            let (entry, next) = central_entry(bytes, at, cd_end, cd_start)?;
            entries.push(entry);
            at = next;
        }
        Ok(ZipArchive { bytes, entries })
    }

    /// The bytes of entry `name`, CRC-checked.
    pub fn read(&self, name: &str) -> Result<&'a [u8], String> {
        let e = self
            .entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| format!("the archive has no entry '{name}'"))?;
        let data = &self.bytes[e.start..e.start + e.size];
        if crc32fast::hash(data) != e.crc32 {
            return Err(format!(
                "entry '{name}': CRC-32 mismatch (the archive is damaged)"
            ));
        }
        Ok(data)
    }
}

/// Parses the central header at `at`; returns the entry and where the next header starts.
fn central_entry(
    b: &[u8],
    at: usize,
    cd_end: usize,
    data_end: usize,
) -> Result<(Entry, usize), String> {
    if at + 46 > cd_end || u32_at(b, at)? != CENTRAL_HEADER {
        return Err(format!("bad central directory header at {at}"));
    }
    let flags = u16_at(b, at + 8)?;
    let method = u16_at(b, at + 10)?;
    let crc32 = u32_at(b, at + 16)?;
    let mut compressed = u64::from(u32_at(b, at + 20)?);
    let mut size = u64::from(u32_at(b, at + 24)?);
    let name_len = usize::from(u16_at(b, at + 28)?);
    let extra_len = usize::from(u16_at(b, at + 30)?);
    let comment_len = usize::from(u16_at(b, at + 32)?);
    let mut local = u64::from(u32_at(b, at + 42)?);
    let next = at + 46 + name_len + extra_len + comment_len;
    if next > cd_end {
        return Err(format!(
            "central directory header at {at} runs past the directory"
        ));
    }
    let name = String::from_utf8(b[at + 46..at + 46 + name_len].to_vec())
        .map_err(|_| format!("entry name at {at} is not UTF-8"))?;
    // ZIP64 extra field (id 1): the 64-bit values of the fields set to 0xFFFFFFFF, in this order.
    let mut extra = &b[at + 46 + name_len..at + 46 + name_len + extra_len];
    while extra.len() >= 4 {
        let id = u16::from_le_bytes([extra[0], extra[1]]);
        let len = usize::from(u16::from_le_bytes([extra[2], extra[3]]));
        let body = extra
            .get(4..4 + len)
            .ok_or_else(|| format!("entry '{name}': extra field runs past its header"))?;
        if id == 1 {
            let mut values = body
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
            for field in [&mut size, &mut compressed, &mut local] {
                if *field == 0xFFFF_FFFF {
                    *field = values
                        .next()
                        .ok_or_else(|| format!("entry '{name}': short ZIP64 extra field"))?;
                }
            }
        }
        extra = &extra[4 + len..];
    }
    if flags & 1 != 0 {
        return Err(format!("entry '{name}' is encrypted"));
    }
    if method != 0 || compressed != size {
        return Err(format!(
            "entry '{name}' is compressed (method {method}); torch.save stores entries uncompressed"
        ));
    }
    let local = to_usize(local, "local header offset")?;
    if local + 30 > data_end || u32_at(b, local)? != LOCAL_HEADER {
        return Err(format!("entry '{name}': no local header at {local}"));
    }
    let start =
        local + 30 + usize::from(u16_at(b, local + 26)?) + usize::from(u16_at(b, local + 28)?);
    let size = to_usize(size, "entry size")?;
    if start.checked_add(size).is_none_or(|e| e > data_end) {
        return Err(format!(
            "truncated zip: entry '{name}' ({size} bytes at {start}) runs past the data ({data_end} bytes)"
        ));
    }
    Ok((
        Entry {
            name,
            start,
            size,
            crc32,
        },
        next,
    ))
}
