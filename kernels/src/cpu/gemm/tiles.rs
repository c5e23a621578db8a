//! AMX tiles for the BF16 GEMM: the 64-byte tile configuration, the five tile operations the AMX
//! microkernel uses ([`TileOps`]), and [`EmulatedTiles`], scalar Rust that does what `ldtilecfg`,
//! `tilezero`, `tileloadd`, `tdpbf16ps` and `tilestored` do (Intel SDM, vol. 2B) on the same
//! memory layout and configuration, so the kernel's packing, blocking and edges are tested on
//! processors without AMX (docs/gemm.md, "AMX"). The `asm!` implementation is in `kernel_amx.rs`.

use super::pairs::{ftz, half};

/// A tile configuration as `ldtilecfg` reads it: byte 0 the palette (1), byte 1 start_row (0),
/// bytes 16..48 the bytes per row of tiles 0..15 (u16), bytes 48..64 their rows (u8); tiles not
/// configured are 0 x 0.
#[repr(C, align(64))]
pub(crate) struct TileConfig(pub [u8; 64]);

impl TileConfig {
    /// Palette 1 with tile t of `shape[t] = (rows, bytes per row)`.
    pub const fn new(shape: [(u8, u16); 8]) -> TileConfig {
        let mut b = [0u8; 64];
        b[0] = 1;
        let mut t = 0;
        while t < 8 {
            let (rows, colsb) = shape[t];
            b[16 + 2 * t] = colsb as u8;
            b[17 + 2 * t] = (colsb >> 8) as u8;
            b[48 + t] = rows;
            t += 1;
        }
        TileConfig(b)
    }

    pub fn rows(&self, t: usize) -> usize {
        self.0[48 + t] as usize
    }

    pub fn colsb(&self, t: usize) -> usize {
        u16::from_le_bytes([self.0[16 + 2 * t], self.0[17 + 2 * t]]) as usize
    }
}

/// The tile operations of the AMX microkernel; tile numbers are constants (they are encoded in
/// the instructions).
pub(crate) trait TileOps: Sized {
    /// Loads `cfg` on this thread (`ldtilecfg`; it zeroes every tile).
    ///
    /// # Safety
    /// The process must have AMX ([`crate::cpu::isa::amx_support`]) for the hardware tiles.
    unsafe fn begin(cfg: &'static TileConfig);
    /// Releases the tiles of this thread (`tilerelease`).
    ///
    /// # Safety
    /// As [`TileOps::begin`].
    unsafe fn end();
    /// The tiles for one microkernel call, configured by `cfg` (loaded by `begin`).
    fn unit(cfg: &'static TileConfig) -> Self;
    /// # Safety
    /// Between `begin` and `end`.
    unsafe fn zero<const T: usize>(&mut self);
    /// Row r of tile T = `colsb` bytes at `src + r * stride`, for r < rows.
    ///
    /// # Safety
    /// Between `begin` and `end`; those bytes must be readable.
    unsafe fn load<const T: usize>(&mut self, src: *const u8, stride: usize);
    /// Tile C += A * B on BF16 pairs (see [`EmulatedTiles`] for the arithmetic).
    ///
    /// # Safety
    /// Between `begin` and `end`; the shapes of C, A, B must agree.
    unsafe fn dpbf16ps<const C: usize, const A: usize, const B: usize>(&mut self);
    /// `colsb` bytes of row r of tile T to `dst + r * stride`, for r < rows.
    ///
    /// # Safety
    /// Between `begin` and `end`; those bytes must be writable.
    unsafe fn store<const T: usize>(&mut self, dst: *mut u8, stride: usize);
}

/// Eight tiles of 16 rows x 64 bytes (palette 1) in memory, and their configuration.
pub(crate) struct EmulatedTiles {
    cfg: &'static TileConfig,
    tmm: [[[u8; 64]; 16]; 8],
}

impl EmulatedTiles {
    fn shape(&self, t: usize) -> (usize, usize) {
        (self.cfg.rows(t), self.cfg.colsb(t))
    }

    /// Dword `i` of row `r` of tile `t`.
    fn dword(&self, t: usize, r: usize, i: usize) -> u32 {
        let b = &self.tmm[t][r][4 * i..4 * i + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// The FP32 FMA of `tdpbf16ps` on two BF16 values (already widened): acc + a * b rounded once,
/// to nearest even, and flushed to zero if subnormal. The product of two BF16 values is exact in
/// f64 and the sum of two 24-bit values rounded to 53 bits then to 24 is the sum rounded once to
/// 24 bits (53 >= 2 * 24 + 1), so this is the fused operation.
#[inline(always)]
pub(crate) fn fma_ftz(a: f32, b: f32, acc: f32) -> f32 {
    ftz((acc as f64 + a as f64 * b as f64) as f32)
}

impl TileOps for EmulatedTiles {
    unsafe fn begin(_: &'static TileConfig) {}
    unsafe fn end() {}

    /// Checks the configuration as `ldtilecfg` does (#GP otherwise): palette 1, start_row 0,
    /// tiles 0..8 at most 16 rows of at most 64 bytes, tiles 8..16 unused (0 x 0).
    fn unit(cfg: &'static TileConfig) -> Self {
        assert!(
            cfg.0[0] == 1 && cfg.0[1] == 0,
            "tile config: palette 1 from row 0"
        );
        for t in 0..16 {
            let (rows, colsb) = (cfg.rows(t), cfg.colsb(t));
            let ok = if t < 8 {
                rows <= 16 && colsb <= 64 && (rows == 0) == (colsb == 0)
            } else {
                rows == 0 && colsb == 0
            };
            assert!(ok, "tile config: tile {t} is {rows} rows x {colsb} bytes");
        }
        EmulatedTiles {
            cfg,
            tmm: [[[0; 64]; 16]; 8],
        }
    }

    unsafe fn zero<const T: usize>(&mut self) {
        self.tmm[T] = [[0; 64]; 16];
    }

    /// Bytes past colsb and rows past the configured rows become zero (write_row_and_zero,
    /// zero_upper_rows).
    unsafe fn load<const T: usize>(&mut self, src: *const u8, stride: usize) {
        let (rows, colsb) = self.shape(T);
        self.tmm[T] = [[0; 64]; 16];
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(src.add(r * stride), self.tmm[T][r].as_mut_ptr(), colsb);
        }
    }

    /// Per the SDM's pseudocode: for each row m of C and column n, two f32 sums start at zero,
    /// one of the even and one of the odd BF16 products over the k pairs of A's row (each an FMA:
    /// DAZ, FTZ, RNE, MXCSR ignored); then C[m][n] += (even + odd), two more rounded additions.
    /// Shapes as the instruction requires (#UD otherwise): three distinct tiles, A and C with the
    /// same rows, B with A's pairs as rows and C's bytes per row.
    unsafe fn dpbf16ps<const C: usize, const A: usize, const B: usize>(&mut self) {
        let ((c_rows, c_colsb), (a_rows, a_colsb), (b_rows, b_colsb)) =
            (self.shape(C), self.shape(A), self.shape(B));
        assert!(
            C != A && C != B && A != B,
            "tdpbf16ps: tiles {C}, {A}, {B} repeat"
        );
        assert!(
            c_rows == a_rows && a_colsb / 4 == b_rows && b_colsb == c_colsb,
            "tdpbf16ps: C {c_rows} x {c_colsb} B, A {a_rows} x {a_colsb} B, B {b_rows} x \
             {b_colsb} B do not agree"
        );
        let (kp, np) = (a_colsb / 4, c_colsb / 4);
        // B's halves once (row k, column n), then each row of A against them.
        let (mut b0, mut b1) = ([[0.0f32; 16]; 16], [[0.0f32; 16]; 16]);
        for k in 0..kp {
            for n in 0..np {
                let b = self.dword(B, k, n);
                (b0[k][n], b1[k][n]) = (half(b, false), half(b, true));
            }
        }
        for m in 0..c_rows {
            let (mut even, mut odd) = ([0.0f32; 16], [0.0f32; 16]);
            for k in 0..kp {
                let a = self.dword(A, m, k);
                let (a0, a1) = (half(a, false), half(a, true));
                for n in 0..np {
                    even[n] = fma_ftz(a0, b0[k][n], even[n]);
                    odd[n] = fma_ftz(a1, b1[k][n], odd[n]);
                }
            }
            for n in 0..np {
                let c = ftz(f32::from_bits(self.dword(C, m, n)));
                let v = ftz(c + ftz(even[n] + odd[n]));
                self.tmm[C][m][4 * n..4 * n + 4].copy_from_slice(&v.to_bits().to_le_bytes());
            }
            self.tmm[C][m][c_colsb..].fill(0);
        }
        for row in &mut self.tmm[C][c_rows..] {
            row.fill(0);
        }
    }

    unsafe fn store<const T: usize>(&mut self, dst: *mut u8, stride: usize) {
        let (rows, colsb) = self.shape(T);
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(self.tmm[T][r].as_ptr(), dst.add(r * stride), colsb);
        }
    }
}
