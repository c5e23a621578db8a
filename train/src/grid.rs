//! Contact sheets: many images tiled into one PNG (for figures and for looking at data and views).

use crate::data::{DataError, RgbImage};
use std::path::Path;

/// Tile `images` row by row, `columns` per row, `padding` pixels of `background` between and around cells. Cells
/// take the largest width and height; smaller images sit centred in their cell.
pub fn image_grid(
    images: &[RgbImage],
    columns: usize,
    padding: usize,
    background: [u8; 3],
) -> RgbImage {
    let columns = columns.max(1).min(images.len().max(1));
    let rows = images.len().div_ceil(columns).max(1);
    let cw = images.iter().map(|i| i.width).max().unwrap_or(1);
    let ch = images.iter().map(|i| i.height).max().unwrap_or(1);
    let (w, h) = (
        columns * (cw + padding) + padding,
        rows * (ch + padding) + padding,
    );
    let mut pixels: Vec<u8> = background.iter().copied().cycle().take(w * h * 3).collect();
    for (k, img) in images.iter().enumerate() {
        let x0 = padding + (k % columns) * (cw + padding) + (cw - img.width) / 2;
        let y0 = padding + (k / columns) * (ch + padding) + (ch - img.height) / 2;
        for y in 0..img.height {
            let src = &img.pixels[y * img.width * 3..(y + 1) * img.width * 3];
            let o = ((y0 + y) * w + x0) * 3;
            pixels[o..o + src.len()].copy_from_slice(src);
        }
    }
    RgbImage::new(w, h, pixels)
}

/// [`image_grid`] written as a PNG file.
pub fn write_image_grid(
    path: impl AsRef<Path>,
    images: &[RgbImage],
    columns: usize,
    padding: usize,
) -> Result<(), DataError> {
    let path = path.as_ref();
    let g = image_grid(images, columns, padding, [255, 255, 255]);
    write_png(path, &g)
}

/// An RGB image encoded as PNG, in memory.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    image::write_buffer_with_format(
        &mut std::io::Cursor::new(&mut out),
        &img.pixels,
        img.width as u32,
        img.height as u32,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| DataError::new("PNG", format!("cannot encode: {e}")))?;
    Ok(out)
}

/// Write an RGB image as PNG.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<(), DataError> {
    image::save_buffer_with_format(
        path,
        &img.pixels,
        img.width as u32,
        img.height as u32,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| DataError::new(path.display().to_string(), format!("cannot write PNG: {e}")))
}
