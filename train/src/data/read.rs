//! Reading input files with bounded resources (docs/data.md, "Hostile inputs"): only regular files
//! are opened (a FIFO or device named `x.png`, or a symlink to one, is refused instead of blocking
//! or streaming forever), every read has a byte cap checked before it starts, gzip streams are
//! capped while they inflate, and an image's decoded size is checked against a pixel budget from
//! its header before any pixel is decoded.

use super::{DataError, Result, RgbImage};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest encoded image file read (bytes). A 64-megapixel PNG or JPEG is far smaller.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// Largest IDX / CIFAR file, after decompression (bytes): MNIST's train images are 47 MB, a
/// CIFAR-10 batch 30 MB. Reads grow a buffer by doubling, so no single allocation exceeds twice this.
pub const MAX_DATA_FILE_BYTES: u64 = 400_000_000;

/// The default decoded-pixel budget per image: 64 megapixels, far above every real set we use
/// (160-640 px frames) and far below a decompression bomb.
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

static MAX_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PIXELS);

/// Sets the decoded-pixel budget per image for this process (`--max-megapixels`).
pub fn set_max_pixels(pixels: u64) {
    MAX_PIXELS.store(pixels.max(1), Ordering::Relaxed);
}

/// The decoded-pixel budget per image.
pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(Ordering::Relaxed)
}

/// A warning on stderr (never stdout, which `--json` keeps for its object).
pub fn warn(message: impl std::fmt::Display) {
    eprintln!("warning: {message}");
}

/// Opens `path` for reading only when it is a regular file (after following symlinks), without
/// blocking on a FIFO; returns the file and its length.
fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    let name = path.display().to_string();
    let meta =
        std::fs::metadata(path).map_err(|e| DataError::new(&name, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(not_regular(&name));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Should the file be swapped for a FIFO after the check, opening it does not block.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|e| DataError::new(&name, format!("cannot read: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| DataError::new(&name, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(not_regular(&name));
    }
    Ok((file, meta.len()))
}

fn not_regular(name: &str) -> DataError {
    DataError::new(
        name,
        "is not a regular file (a FIFO, device, socket or folder, or a symlink to one): refused",
    )
}

fn too_large(name: &str, what: &str, max: u64) -> DataError {
    DataError::new(
        name,
        format!("{what} is larger than the cap of {max} bytes: refused"),
    )
}

/// The bytes of the regular file `path`, at most `max_bytes` of them (else an error naming it).
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let (file, len) = open_regular(path)?;
    if len > max_bytes {
        return Err(too_large(
            &name,
            &format!("the file ({len} bytes)"),
            max_bytes,
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::new(&name, format!("cannot read: {e}")))?;
    if out.len() as u64 > max_bytes {
        return Err(too_large(&name, "the file", max_bytes));
    }
    Ok(out)
}

/// Reads an IDX / CIFAR file, gunzipping it when it starts with the gzip magic (1f 8b); the
/// inflated stream stops at `max_bytes` (an error), so a small bomb never grows past the cap.
pub fn read_maybe_gz(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let raw = read_regular(path, max_bytes)?;
    if raw.len() < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .take(max_bytes + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::new(&name, format!("bad gzip stream: {e}")))?;
    if out.len() as u64 > max_bytes {
        return Err(too_large(&name, "the decompressed stream", max_bytes));
    }
    Ok(out)
}

/// Decodes an encoded image (PNG or JPEG; gray, gray+alpha, RGB, RGBA, 8 or 16 bit) to 8-bit RGB,
/// alpha dropped. Its width x height, read from the header, must fit the pixel budget
/// ([`max_pixels`]) before anything is decoded; a JPEG without its end-of-image marker (a
/// truncated file, which the decoder would fill with grey) is an error.
pub fn decode_image(bytes: &[u8], source_name: &str) -> Result<RgbImage> {
    let bad = |m: String| DataError::new(source_name, m);
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| bad(format!("cannot decode image: {e}")))
    };
    let format = reader()?.format();
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| bad(format!("cannot decode image: {e}")))?;
    let (pixels, budget) = (w as u64 * h as u64, max_pixels());
    if pixels > budget {
        return Err(bad(format!(
            "{w} x {h} = {pixels} pixels is over the budget of {budget} pixels per image \
             (max_megapixels): refused before decoding"
        )));
    }
    if w == 0 || h == 0 {
        return Err(bad("image has zero size".into()));
    }
    if format == Some(image::ImageFormat::Jpeg) && !has_jpeg_end(bytes) {
        return Err(bad(
            "truncated JPEG: no end-of-image marker (FF D9) at its end".into(),
        ));
    }
    let mut decoder = reader()?;
    let mut limits = image::Limits::default();
    // RGBA with 16 bits per channel is the widest layout: 8 bytes per pixel, plus the RGB copy.
    limits.max_alloc = Some(budget.saturating_mul(8 + 3));
    decoder.limits(limits);
    let img = decoder
        .decode()
        .map_err(|e| bad(format!("cannot decode image: {e}")))?;
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(RgbImage::new(w as usize, h as usize, rgb.into_raw()))
}

/// The JPEG end-of-image marker within the last 4 KiB (entropy-coded data escapes every 0xFF, so
/// FF D9 there is the marker; some writers pad after it).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Reads and decodes the image file `path` under the caps above.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = read_regular(path, MAX_IMAGE_FILE_BYTES)?;
    decode_image(&bytes, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn budget_is_checked_from_the_header() {
        let bytes = png(40, 30);
        assert_eq!(decode_image(&bytes, "a.png").unwrap().width, 40);
        // a header claiming 12000 x 12000 with no data behind it: refused before any decoding
        let mut huge = bytes.clone();
        huge[16..20].copy_from_slice(&12000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&12000u32.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&huge[12..29]);
        huge[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        let e = decode_image(&huge, "bomb.png").unwrap_err().to_string();
        assert!(
            e.contains("bomb.png") && e.contains("144000000 pixels"),
            "{e}"
        );
    }
}
