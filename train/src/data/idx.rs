//! IDX files (LeCun's MNIST format, also Fashion-MNIST): big-endian header `00 00 type ndims`, then ndims u32
//! sizes, then the data. Images are type 0x08 (u8) with 3 dims [n, rows, cols]; labels are type 0x08 with 1 dim.
//! Files may be gzip-compressed (detected by their magic bytes, whatever the name).

use super::read::{read_regular, MAX_DATA_FILE_BYTES};
use super::{DataError, Dataset, Result, RgbImage, Sample};
use std::io::Read;
use std::path::Path;

/// The dims of an IDX u8 header (`bytes` starts with it) and the header's length; the data size
/// they imply is checked (overflow-free) against [`MAX_DATA_FILE_BYTES`].
fn parse_idx_header(bytes: &[u8], name: &str) -> Result<(Vec<usize>, usize, usize)> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::new(
            name,
            "not an IDX file (magic must start with 00 00)",
        ));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::new(
            name,
            format!(
                "IDX element type 0x{:02x} unsupported (only 0x08, unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::new(
            name,
            format!(
                "IDX header truncated ({} bytes for {ndims} dims)",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&c| c as u64 <= MAX_DATA_FILE_BYTES)
        .ok_or_else(|| {
            DataError::new(
                name,
                format!("IDX dims {dims:?} ask for more than the cap of {MAX_DATA_FILE_BYTES} data bytes: refused"),
            )
        })?;
    Ok((dims, header, count))
}

/// Parse an IDX u8 array: returns (dims, data).
pub fn parse_idx_u8(bytes: &[u8], name: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let (dims, header, count) = parse_idx_header(bytes, name)?;
    if bytes.len() - header != count {
        return Err(DataError::new(
            name,
            format!(
                "IDX dims {dims:?} need {count} data bytes, file has {}",
                bytes.len() - header
            ),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Reads an IDX file, gunzipping it when it starts with the gzip magic: the header is inflated
/// first and the stream is then read to the size it declares plus one byte, so a gzip bomb stops
/// at the declared size (itself capped) instead of inflating to the end.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = read_regular(path, MAX_DATA_FILE_BYTES)?;
    parse_idx_file(&raw, &path.display().to_string())
}

/// [`read_idx`] on the bytes of a file (plain or gzipped) named `name`.
pub fn parse_idx_file(raw: &[u8], name: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    if raw.len() < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
        return parse_idx_u8(raw, name);
    }
    let gz_error = |e: std::io::Error| DataError::new(name, format!("bad gzip stream: {e}"));
    let mut stream = flate2::read::GzDecoder::new(raw);
    let mut head = Vec::new();
    (&mut stream)
        .take(4)
        .read_to_end(&mut head)
        .map_err(gz_error)?;
    let ndims = head.get(3).copied().unwrap_or(0) as u64;
    (&mut stream)
        .take(4 * ndims)
        .read_to_end(&mut head)
        .map_err(gz_error)?;
    let (_, _, count) = parse_idx_header(&head, name)?;
    stream
        .take(count as u64 + 1)
        .read_to_end(&mut head)
        .map_err(gz_error)?;
    parse_idx_u8(&head, name)
}

/// Gray images from an IDX file, with labels from a second IDX file when given.
pub struct IdxDataset {
    name: String,
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Option<Vec<u8>>,
}

impl IdxDataset {
    pub fn open(images: impl AsRef<Path>, labels: Option<&Path>) -> Result<Self> {
        let images = images.as_ref();
        let name = images.display().to_string();
        let (dims, pixels) = read_idx(images)?;
        if dims.len() != 3 {
            return Err(DataError::new(
                &name,
                format!("IDX images need 3 dims [n, rows, cols], found {dims:?}"),
            ));
        }
        let labels = match labels {
            None => None,
            Some(p) => {
                let lname = p.display().to_string();
                let (ldims, l) = read_idx(p)?;
                if ldims != [dims[0]] {
                    return Err(DataError::new(
                        lname,
                        format!("IDX labels dims {ldims:?} do not match {} images", dims[0]),
                    ));
                }
                if let Some(&max) = l.iter().max() {
                    let mut seen = [false; 256];
                    l.iter().for_each(|&c| seen[c as usize] = true);
                    let present = seen.iter().filter(|&&x| x).count();
                    if present < max as usize + 1 {
                        super::warn(format!(
                            "{lname}: labels go up to {max}, so the set has {} classes, but only {present} of them have images",
                            max as usize + 1
                        ));
                    }
                }
                Some(l)
            }
        };
        if dims[1] == 0 || dims[2] == 0 {
            return Err(DataError::new(
                &name,
                format!("IDX images of {} x {} pixels: empty", dims[1], dims[2]),
            ));
        }
        Ok(Self {
            name,
            rows: dims[1],
            cols: dims[2],
            pixels,
            labels,
        })
    }

    /// Open `<dir>/<prefix>-images-idx3-ubyte[.gz]` with `<prefix>-labels-idx1-ubyte[.gz]` (prefix "train" or "t10k").
    pub fn open_split(dir: impl AsRef<Path>, prefix: &str) -> Result<Self> {
        let dir = dir.as_ref();
        let find = |stem: String| -> Result<std::path::PathBuf> {
            [stem.clone(), format!("{stem}.gz")]
                .into_iter()
                .map(|f| dir.join(f))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    DataError::new(dir.join(&stem).display().to_string(), "not found (nor .gz)")
                })
        };
        let images = find(format!("{prefix}-images-idx3-ubyte"))?;
        let labels = find(format!("{prefix}-labels-idx1-ubyte"))?;
        Self::open(images, Some(&labels))
    }
}

impl Dataset for IdxDataset {
    fn len(&self) -> usize {
        self.pixels.len() / (self.rows * self.cols).max(1)
    }

    fn get(&self, i: usize) -> Result<Sample> {
        let n = self.rows * self.cols;
        let image = RgbImage::from_gray(self.cols, self.rows, &self.pixels[i * n..(i + 1) * n]);
        Ok(Sample {
            image,
            label: self.labels.as_ref().map(|l| l[i] as usize),
        })
    }

    fn class_names(&self) -> Option<Vec<String>> {
        let max = *self.labels.as_ref()?.iter().max()? as usize;
        Some((0..=max).map(|c| c.to_string()).collect())
    }

    fn describe(&self, i: usize) -> String {
        format!("{}[{i}]", self.name)
    }
}
