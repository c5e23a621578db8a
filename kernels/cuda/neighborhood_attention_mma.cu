// 2-D neighborhood attention on tensor cores: mma.sync m16n8k16 BF16 x BF16 -> F32, forward
// (flash style: online softmax, log-sum-exp saved) and backward (P recomputed from the lse).
// Definition: docs/neighborhood-attention.md; design: docs/gpu-attention.md ("Tensor cores").
// NEVER RUN ON A GPU YET: compiled by NVRTC for sm_80 / sm_90a in CI; kernels/tests/cuda_na_mma.rs
// checks it against the CPU reference when a GPU is present. The SIMT kernels
// (neighborhood_attention.cu) stay the reference and the default.
//
// Tiles in DILATION-GROUP units (as the SIMT kernels): a block owns tile_r x 8 queries (keys) of
// one row group and one column group; warp w owns tile rows 2w, 2w+1, i.e. 16 queries (keys) =
// the 16 rows of an mma A fragment: fragment row g (0..7) is (tile row 2w, col g), row g + 8 is
// (tile row 2w + 1, col g). Its partners (keys of the forward / dQ pass, queries of the dK/dV
// pass) are staged as bf16 in shared memory, the block's halo as halo rows x CW columns (CW = 16
// or 32, the halo width rounded up; zero-filled beyond it), row stride D + 8 elements (16-byte
// aligned rows for ldmatrix; 32-bit fragment loads of 8 rows hit 8 different 4-bank groups).
// A warp walks the halo ONE ROW AT A TIME (a chunk of CW partners): S = A B^T on mma, the window
// mask (per pair: is the key in the query's k' x k' window), rpb, then the second product on mma
// with the f32 probabilities rounded to bf16 as the A operand straight from the S registers.
//
// Inputs q, k, v, d_out: f32 or bf16 (converted to bf16 while staging); out and gradients in the
// element type; lse, D = rowsum(dO * O), rpb, d(rpb), the dS scratch: f32. No atomics anywhere:
// every output element is written by one thread; d(rpb) is reduced in a fixed order.
//
// Kernels (T = f32 | bf16, D = 32 | 64, CW = 16 | 32):
//   na2d_mma_fwd_T_dD_cCW     out, lse
//   na2d_mma_dot_T            D = rowsum(dO * O) per query
//   na2d_mma_bwd_q_T_dD_cCW   dQ = s dS K (and dS into the scratch when d(rpb) is wanted)
//   na2d_mma_bwd_kv_T_dD_cCW  dK = s dS^T Q, dV = P^T dO over the keys' inverse neighbourhoods
//   na2d_mma_rpb_rows, na2d_mma_rpb_sum   d(rpb): per (b, head, query row), then over (b, row)

typedef unsigned short bf16_t;

static __device__ __forceinline__ float ld(const float* p) { return *p; }
static __device__ __forceinline__ float ld(const bf16_t* p) { return __uint_as_float(((unsigned)*p) << 16); }
static __device__ __forceinline__ void st(float* p, float v) { *p = v; }
static __device__ __forceinline__ void st(bf16_t* p, float v) {
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
    *p = h;
}
// Two f32 as bf16x2: `lo` in the low half (the lower column of a fragment pair).
static __device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

static __device__ __forceinline__ unsigned smem_u32(const void* p) {
    unsigned r;
    asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}
static __device__ __forceinline__ void ldmatrix_x4_trans(unsigned r[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
static __device__ __forceinline__ void mma_bf16(float d[4], const unsigned a[4], unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

struct View {
    long long offset, batch, row, col, head;
};
static __device__ __forceinline__ long long at(const View& v, int b, int y, int x, int h) {
    return v.offset + b * v.batch + y * v.row + x * v.col + h * v.head;
}

// Mirrors MmaParams in kernels/src/cuda/neighborhood_attention_mma/mod.rs (same order, 304 bytes).
struct MmaParams {
    View q, k, v, dq, dk, dv;
    int batch, height, width, heads, dim;
    int kh, kw, dil_h, dil_w;
    int tile_r;            // rows of the block tile (group units); 2 per warp; 8 columns
    int tiles_r, tiles_c;  // tiles per dilation group
    int halo_r;            // rows of the staged halo (the largest of any tile, from the host plan)
    int has_rpb;
    int want_ds;           // bwd_q: write dS into the scratch (for d(rpb))
    float scale;
};

#define TC 8  // tile columns

static __device__ __forceinline__ int group_len(int len, int dil, int g) {
    return g >= len ? 0 : (len - g + dil - 1) / dil;
}
static __device__ __forceinline__ int start_g(int idx, int n, int k) {
    int kk = min(k, n);
    return min(max(idx - kk / 2, 0), n - kk);
}
static __device__ __forceinline__ int inv_lo(int a, int n, int k) {
    int kk = min(k, n);
    return a < kk ? 0 : a - (kk - 1 - kk / 2);
}
static __device__ __forceinline__ int inv_hi(int a, int n, int k) {
    int kk = min(k, n);
    return a >= n - kk ? n - 1 : a + kk / 2;
}
// Key `key` (group units) is in the window of query `qq` on an axis of group length n.
static __device__ __forceinline__ bool in_window(int qq, int key, int n, int k) {
    int s = start_g(qq, n, k);
    return key >= s && key < s + min(k, n);
}

struct Tile {
    int b, h, gr, gc, nr, nc, t0r, t0c, t1r, t1c;
};
static __device__ __forceinline__ Tile tile_of(const MmaParams& P) {
    Tile t;
    t.b = blockIdx.y / P.heads;
    t.h = blockIdx.y % P.heads;
    int per_row = P.dil_w * P.tiles_c;
    int rt = blockIdx.x / per_row, ct = blockIdx.x % per_row;
    t.gr = rt / P.tiles_r;
    t.t0r = (rt % P.tiles_r) * P.tile_r;
    t.gc = ct / P.tiles_c;
    t.t0c = (ct % P.tiles_c) * TC;
    t.nr = group_len(P.height, P.dil_h, t.gr);
    t.nc = group_len(P.width, P.dil_w, t.gc);
    t.t1r = min(t.t0r + P.tile_r, t.nr);
    t.t1c = min(t.t0c + TC, t.nc);
    return t;
}

// The halo (group units): rows r0 .. r0+rn, cols c0 .. c0+cn. inverse = false: the union of the
// tile's queries' windows; true: of the tile's keys' inverse neighbourhoods.
struct Halo {
    int r0, rn, c0, cn;
};
static __device__ __forceinline__ Halo halo_of(const MmaParams& P, const Tile& t, bool inverse) {
    Halo o;
    if (inverse) {
        o.r0 = inv_lo(t.t0r, t.nr, P.kh);
        o.rn = inv_hi(t.t1r - 1, t.nr, P.kh) + 1 - o.r0;
        o.c0 = inv_lo(t.t0c, t.nc, P.kw);
        o.cn = inv_hi(t.t1c - 1, t.nc, P.kw) + 1 - o.c0;
    } else {
        o.r0 = start_g(t.t0r, t.nr, P.kh);
        o.rn = start_g(t.t1r - 1, t.nr, P.kh) + min(P.kh, t.nr) - o.r0;
        o.c0 = start_g(t.t0c, t.nc, P.kw);
        o.cn = start_g(t.t1c - 1, t.nc, P.kw) + min(P.kw, t.nc) - o.c0;
    }
    return o;
}

// Stage the halo of two views as bf16 [rn][CW][D + 8]; columns >= cn are zero.
template <typename T, int D, int CW>
static __device__ __forceinline__ void stage2(bf16_t* s1, const T* x1, const View& v1, bf16_t* s2, const T* x2,
                                              const View& v2, const MmaParams& P, const Tile& t, const Halo& hl) {
    constexpr int DS = D + 8, PAIRS = D / 2;
    int total = hl.rn * CW * PAIRS;
    for (int e = threadIdx.x; e < total; e += blockDim.x) {
        int c = 2 * (e % PAIRS), key = e / PAIRS;
        int row = key / CW, col = key % CW;
        unsigned w1 = 0u, w2 = 0u;
        if (col < hl.cn) {
            int y = (hl.r0 + row) * P.dil_h + t.gr, x = (hl.c0 + col) * P.dil_w + t.gc;
            const T* p1 = x1 + at(v1, t.b, y, x, t.h) + c;
            const T* p2 = x2 + at(v2, t.b, y, x, t.h) + c;
            w1 = pack_bf16(ld(p1), ld(p1 + 1));
            w2 = pack_bf16(ld(p2), ld(p2 + 1));
        }
        *reinterpret_cast<unsigned*>(s1 + key * DS + c) = w1;
        *reinterpret_cast<unsigned*>(s2 + key * DS + c) = w2;
    }
}

// The warp's 16 rows: tile rows r[0] (fragment rows g) and r[1] (g + 8), column j (= t0c + g),
// each clamped into the tile (live says whether the row is real and is written).
struct Rows {
    int r[2], j;
    bool live[2], any;
};
static __device__ __forceinline__ Rows rows_of(const Tile& t, int warp, int g) {
    Rows w;
    int r0 = t.t0r + 2 * warp, j = t.t0c + g;
    w.any = r0 < t.t1r;
    for (int h = 0; h < 2; ++h) {
        w.live[h] = r0 + h < t.t1r && j < t.t1c;
        w.r[h] = min(r0 + h, t.t1r - 1);
    }
    w.j = min(j, t.t1c - 1);
    return w;
}

// A fragments (16 rows x D) of a [B, H, W, heads, D] view for the warp's rows, as bf16.
template <typename T, int D>
static __device__ __forceinline__ void load_a(unsigned (&a)[D / 16][4], const T* x, const View& v, const MmaParams& P,
                                              const Tile& t, const Rows& w, int tq) {
    const T* p[2];
    for (int h = 0; h < 2; ++h)
        p[h] = x + at(v, t.b, w.r[h] * P.dil_h + t.gr, w.j * P.dil_w + t.gc, t.h);
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
        int c = ks * 16 + 2 * tq;
        a[ks][0] = pack_bf16(ld(p[0] + c), ld(p[0] + c + 1));
        a[ks][1] = pack_bf16(ld(p[1] + c), ld(p[1] + c + 1));
        a[ks][2] = pack_bf16(ld(p[0] + c + 8), ld(p[0] + c + 9));
        a[ks][3] = pack_bf16(ld(p[1] + c + 8), ld(p[1] + c + 9));
    }
}

// s[n] = A (16 x D) times the partners of halo row `hr` (CW x D, rows of `bs`) transposed.
template <int D, int CW>
static __device__ __forceinline__ void mma_abt(float (&s)[CW / 8][4], const unsigned (&a)[D / 16][4], const bf16_t* bs,
                                               int hr, int g, int tq) {
    constexpr int DS = D + 8;
#pragma unroll
    for (int n = 0; n < CW / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks)
#pragma unroll
        for (int n = 0; n < CW / 8; ++n) {
            const bf16_t* row = bs + (hr * CW + n * 8 + g) * DS + ks * 16 + 2 * tq;
            mma_bf16(s[n], a[ks], *reinterpret_cast<const unsigned*>(row),
                     *reinterpret_cast<const unsigned*>(row + 8));
        }
}

// acc (16 x D) += X (16 x CW, f32 in C-fragment layout, rounded to bf16) times halo row `hr` of
// `bs` (CW x D): X's C fragments of two 8-column tiles are the A fragment of one k-step of 16.
template <int D, int CW>
static __device__ __forceinline__ void mma_xb(float (&acc)[D / 8][4], const float (&x)[CW / 8][4], const bf16_t* bs,
                                              int hr, int lane) {
    constexpr int DS = D + 8;
#pragma unroll
    for (int kk = 0; kk < CW / 16; ++kk) {
        unsigned a[4] = {pack_bf16(x[2 * kk][0], x[2 * kk][1]), pack_bf16(x[2 * kk][2], x[2 * kk][3]),
                         pack_bf16(x[2 * kk + 1][0], x[2 * kk + 1][1]),
                         pack_bf16(x[2 * kk + 1][2], x[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
            unsigned r[4];
            ldmatrix_x4_trans(r, bs + (hr * CW + kk * 16 + lane % 16) * DS + dp * 16 + (lane / 16) * 8);
            mma_bf16(acc[2 * dp], a, r[0], r[1]);
            mma_bf16(acc[2 * dp + 1], a, r[2], r[3]);
        }
    }
}

static __device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
static __device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// The rpb entry of (query, key) in group units, or 0 without rpb.
static __device__ __forceinline__ float bias(const MmaParams& P, const float* rpb, int h, int qi, int qj, int kr,
                                             int kc) {
    if (!P.has_rpb) return 0.f;
    int bw = 2 * P.kw - 1;
    return rpb[((long long)h * (2 * P.kh - 1) + (kr - qi + P.kh - 1)) * bw + (kc - qj + P.kw - 1)];
}

static __device__ __forceinline__ long long query_index(const MmaParams& P, const Tile& t, int i, int j) {
    return (((long long)t.b * P.heads + t.h) * P.height + i * P.dil_h + t.gr) * P.width + j * P.dil_w + t.gc;
}

#define NEG_INF (-__int_as_float(0x7f800000))

// ---------------------------------------------------------------------------------------------
template <typename T, int D, int CW>
static __device__ void na_mma_fwd(const MmaParams& P, const T* q, const T* k, const T* v, const float* rpb, T* out,
                                  float* lse) {
    constexpr int DS = D + 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16_t* ks = reinterpret_cast<bf16_t*>(smem_raw);
    bf16_t* vs = ks + P.halo_r * CW * DS;
    Tile t = tile_of(P);
    if (t.t0r >= t.nr || t.t0c >= t.nc) return;
    Halo hl = halo_of(P, t, false);
    if (hl.rn > P.halo_r || hl.cn > CW) __trap();  // the host plan and this kernel disagree
    stage2<T, D, CW>(ks, k, P.k, vs, v, P.v, P, t, hl);
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    Rows w = rows_of(t, warp, g);
    if (!w.any) return;  // warp-uniform; no barrier follows
    unsigned qa[D / 16][4];
    load_a<T, D>(qa, q, P.q, P, t, w, tq);
    float o[D / 8][4], m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[n][e] = 0.f;
    int kk_r = min(P.kh, t.nr);
    int row_lo = start_g(w.r[0], t.nr, P.kh), row_hi = start_g(w.r[1], t.nr, P.kh) + kk_r;
    for (int kr = row_lo; kr < row_hi; ++kr) {
        float s[CW / 8][4];
        mma_abt<D, CW>(s, qa, ks, kr - hl.r0, g, tq);
        float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
        for (int n = 0; n < CW / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                int h = e / 2, kc = hl.c0 + n * 8 + 2 * tq + (e % 2);
                bool ok = in_window(w.r[h], kr, t.nr, P.kh) && in_window(w.j, kc, t.nc, P.kw);
                s[n][e] = ok ? s[n][e] * P.scale + bias(P, rpb, t.h, w.r[h], w.j, kr, kc) : NEG_INF;
                mx[h] = fmaxf(mx[h], s[n][e]);
            }
        float ref[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            float mn = fmaxf(m[h], quad_max(mx[h]));
            ref[h] = mn == NEG_INF ? 0.f : mn;  // a row with no key yet: exp(-inf - 0) = 0
            float alpha = expf(m[h] - ref[h]);
            m[h] = mn;
            l[h] *= alpha;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                o[n][2 * h] *= alpha;
                o[n][2 * h + 1] *= alpha;
            }
        }
#pragma unroll
        for (int n = 0; n < CW / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                s[n][e] = expf(s[n][e] - ref[e / 2]);
                l[e / 2] += s[n][e];
            }
        mma_xb<D, CW>(o, s, vs, kr - hl.r0, lane);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        float sum = quad_sum(l[h]);
        if (!w.live[h]) continue;
        long long qi = query_index(P, t, w.r[h], w.j);
        int y = w.r[h] * P.dil_h + t.gr, x = w.j * P.dil_w + t.gc;
        T* op = out + ((((long long)t.b * P.height + y) * P.width + x) * P.heads + t.h) * D;
        float inv = 1.f / sum;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            st(op + n * 8 + 2 * tq, o[n][2 * h] * inv);
            st(op + n * 8 + 2 * tq + 1, o[n][2 * h + 1] * inv);
        }
        if (tq == 0) lse[qi] = m[h] + logf(sum);
    }
}

// ---------------------------------------------------------------------------------------------
// D = rowsum(dO * O), one thread per (query, head), in [B, heads, H, W] order.
template <typename T>
static __device__ void na_mma_dot(const MmaParams& P, const T* out, const T* d_out, float* dsum) {
    long long n = (long long)P.batch * P.heads * P.height * P.width;
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    int x = (int)(i % P.width), y = (int)(i / P.width % P.height);
    int h = (int)(i / ((long long)P.width * P.height) % P.heads), b = (int)(i / ((long long)P.width * P.height * P.heads));
    long long base = ((((long long)b * P.height + y) * P.width + x) * P.heads + h) * P.dim;
    float acc = 0.f;
    for (int c = 0; c < P.dim; ++c) acc = fmaf(ld(out + base + c), ld(d_out + base + c), acc);
    dsum[i] = acc;
}

// The contiguous [B, H, W, heads, D] layout of out and d_out as a View.
static __device__ __forceinline__ View out_view(const MmaParams& P) {
    View ov;
    ov.offset = 0;
    ov.head = P.dim;
    ov.col = (long long)P.heads * P.dim;
    ov.row = ov.col * P.width;
    ov.batch = ov.row * P.height;
    return ov;
}

// ---------------------------------------------------------------------------------------------
// Backward, query tiles: P = exp(s QK^T + rpb - lse), dP = dO V^T, dS = P (dP - D), dQ = s dS K.
template <typename T, int D, int CW>
static __device__ void na_mma_bwd_q(const MmaParams& P, const T* q, const T* k, const T* v, const float* rpb,
                                    const float* lse, const float* dsum, const T* d_out, T* grads, float* ds) {
    constexpr int DS = D + 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16_t* ks = reinterpret_cast<bf16_t*>(smem_raw);
    bf16_t* vs = ks + P.halo_r * CW * DS;
    Tile t = tile_of(P);
    if (t.t0r >= t.nr || t.t0c >= t.nc) return;
    Halo hl = halo_of(P, t, false);
    if (hl.rn > P.halo_r || hl.cn > CW) __trap();
    stage2<T, D, CW>(ks, k, P.k, vs, v, P.v, P, t, hl);
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    Rows w = rows_of(t, warp, g);
    if (!w.any) return;
    unsigned qa[D / 16][4], ga[D / 16][4];
    load_a<T, D>(qa, q, P.q, P, t, w, tq);
    load_a<T, D>(ga, d_out, out_view(P), P, t, w, tq);
    float dq[D / 8][4], lq[2], dd[2];
    long long qi[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        qi[h] = query_index(P, t, w.r[h], w.j);
        lq[h] = lse[qi[h]];
        dd[h] = dsum[qi[h]];
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) dq[n][e] = 0.f;
    int slots = P.kh * P.kw;
    int kk_r = min(P.kh, t.nr);
    int sc = start_g(w.j, t.nc, P.kw);
    int row_lo = start_g(w.r[0], t.nr, P.kh), row_hi = start_g(w.r[1], t.nr, P.kh) + kk_r;
    for (int kr = row_lo; kr < row_hi; ++kr) {
        float s[CW / 8][4], dp[CW / 8][4];
        mma_abt<D, CW>(s, qa, ks, kr - hl.r0, g, tq);
        mma_abt<D, CW>(dp, ga, vs, kr - hl.r0, g, tq);
#pragma unroll
        for (int n = 0; n < CW / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                int h = e / 2, kc = hl.c0 + n * 8 + 2 * tq + (e % 2);
                bool ok = in_window(w.r[h], kr, t.nr, P.kh) && in_window(w.j, kc, t.nc, P.kw);
                float p = ok ? expf(s[n][e] * P.scale + bias(P, rpb, t.h, w.r[h], w.j, kr, kc) - lq[h]) : 0.f;
                s[n][e] = p * (dp[n][e] - dd[h]);
                if (ok && P.want_ds && w.live[h])
                    ds[qi[h] * slots + (kr - start_g(w.r[h], t.nr, P.kh)) * P.kw + (kc - sc)] = s[n][e];
            }
        mma_xb<D, CW>(dq, s, ks, kr - hl.r0, lane);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        if (!w.live[h]) continue;
        T* gp = grads + at(P.dq, t.b, w.r[h] * P.dil_h + t.gr, w.j * P.dil_w + t.gc, t.h);
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            st(gp + n * 8 + 2 * tq, dq[n][2 * h] * P.scale);
            st(gp + n * 8 + 2 * tq + 1, dq[n][2 * h + 1] * P.scale);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backward, key tiles over the inverse neighbourhoods (queries staged: Q, dO, lse, D):
// P^T = exp(s K Q^T + rpb - lse), dP^T = V dO^T, dS^T = P^T (dP^T - D); dV = P^T dO, dK = s dS^T Q.
template <typename T, int D, int CW>
static __device__ void na_mma_bwd_kv(const MmaParams& P, const T* q, const T* k, const T* v, const float* rpb,
                                     const float* lse, const float* dsum, const T* d_out, T* grads) {
    constexpr int DS = D + 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16_t* qs = reinterpret_cast<bf16_t*>(smem_raw);
    bf16_t* gs = qs + P.halo_r * CW * DS;
    float* ls = reinterpret_cast<float*>(gs + P.halo_r * CW * DS);
    float* dl = ls + P.halo_r * CW;
    Tile t = tile_of(P);
    if (t.t0r >= t.nr || t.t0c >= t.nc) return;
    Halo hl = halo_of(P, t, true);
    if (hl.rn > P.halo_r || hl.cn > CW) __trap();
    stage2<T, D, CW>(qs, q, P.q, gs, d_out, out_view(P), P, t, hl);
    for (int e = threadIdx.x; e < hl.rn * CW; e += blockDim.x) {
        int row = e / CW, col = e % CW;
        bool in = col < hl.cn;
        long long i = in ? query_index(P, t, hl.r0 + row, hl.c0 + col) : 0;
        ls[e] = in ? lse[i] : 0.f;
        dl[e] = in ? dsum[i] : 0.f;
    }
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    Rows w = rows_of(t, warp, g);  // here: the warp's 16 keys
    if (!w.any) return;
    unsigned ka[D / 16][4], va[D / 16][4];
    load_a<T, D>(ka, k, P.k, P, t, w, tq);
    load_a<T, D>(va, v, P.v, P, t, w, tq);
    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            dk[n][e] = 0.f;
            dv[n][e] = 0.f;
        }
    int row_lo = inv_lo(w.r[0], t.nr, P.kh), row_hi = inv_hi(w.r[1], t.nr, P.kh) + 1;
    for (int qr = row_lo; qr < row_hi; ++qr) {
        int hr = qr - hl.r0;
        float s[CW / 8][4], dp[CW / 8][4];
        mma_abt<D, CW>(s, ka, qs, hr, g, tq);
        mma_abt<D, CW>(dp, va, gs, hr, g, tq);
#pragma unroll
        for (int n = 0; n < CW / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                int h = e / 2, col = n * 8 + 2 * tq + (e % 2), qc = hl.c0 + col;
                bool ok = qc < t.nc && in_window(qr, w.r[h], t.nr, P.kh) && in_window(qc, w.j, t.nc, P.kw);
                float p = ok ? expf(s[n][e] * P.scale + bias(P, rpb, t.h, qr, qc, w.r[h], w.j) - ls[hr * CW + col])
                             : 0.f;
                s[n][e] = p;
                dp[n][e] = p * (dp[n][e] - dl[hr * CW + col]);
            }
        mma_xb<D, CW>(dv, s, gs, hr, lane);
        mma_xb<D, CW>(dk, dp, qs, hr, lane);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        if (!w.live[h]) continue;
        int y = w.r[h] * P.dil_h + t.gr, x = w.j * P.dil_w + t.gc;
        T* pk = grads + at(P.dk, t.b, y, x, t.h);
        T* pv = grads + at(P.dv, t.b, y, x, t.h);
#pragma unroll
        for (int n = 0; n < D / 8; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                st(pk + n * 8 + 2 * tq + e, dk[n][2 * h + e] * P.scale);
                st(pv + n * 8 + 2 * tq + e, dv[n][2 * h + e]);
            }
    }
}

// ---------------------------------------------------------------------------------------------
// d(rpb), fixed order. Rows: block (b * heads + h) * H + y, one thread per table entry: the dS of
// the row's queries that use that offset, over x in order.
extern "C" __global__ void na2d_mma_rpb_rows(MmaParams P, const float* ds, float* partial) {
    int tw = 2 * P.kw - 1, table = (2 * P.kh - 1) * tw, slots = P.kh * P.kw;
    long long row = blockIdx.x;  // (b * heads + h) * H + y
    int y = (int)(row % P.height);
    int gr = y % P.dil_h, i = y / P.dil_h, nr = group_len(P.height, P.dil_h, gr);
    int kr = min(P.kh, nr), sr = start_g(i, nr, P.kh);
    for (int e = threadIdx.x; e < table; e += blockDim.x) {
        int a = e / tw - (sr + P.kh - 1 - i), ec = e % tw;
        float acc = 0.f;
        if (a >= 0 && a < kr) {
            for (int x = 0; x < P.width; ++x) {
                int gc = x % P.dil_w, j = x / P.dil_w, nc = group_len(P.width, P.dil_w, gc);
                int c = ec - (start_g(j, nc, P.kw) + P.kw - 1 - j);
                if (c >= 0 && c < min(P.kw, nc)) acc += ds[(row * P.width + x) * slots + a * P.kw + c];
            }
        }
        partial[row * table + e] = acc;
    }
}

// d_rpb[h][e] = the row partials summed over (b, y) in order.
extern "C" __global__ void na2d_mma_rpb_sum(MmaParams P, const float* partial, float* d_rpb) {
    int table = (2 * P.kh - 1) * (2 * P.kw - 1);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P.heads * table) return;
    int h = i / table, e = i % table;
    float acc = 0.f;
    for (int b = 0; b < P.batch; ++b)
        for (int y = 0; y < P.height; ++y)
            acc += partial[(((long long)b * P.heads + h) * P.height + y) * table + e];
    d_rpb[i] = acc;
}

#define MMA_NA_KERNELS(T, TN, D, CW)                                                                              \
    extern "C" __global__ void __launch_bounds__(128) na2d_mma_fwd_##TN##_d##D##_c##CW(                           \
        MmaParams P, const T* q, const T* k, const T* v, const float* rpb, T* out, float* lse) {                  \
        na_mma_fwd<T, D, CW>(P, q, k, v, rpb, out, lse);                                                          \
    }                                                                                                             \
    extern "C" __global__ void __launch_bounds__(128) na2d_mma_bwd_q_##TN##_d##D##_c##CW(                         \
        MmaParams P, const T* q, const T* k, const T* v, const float* rpb, const float* lse, const float* dsum,   \
        const T* d_out, T* grads, float* ds) {                                                                    \
        na_mma_bwd_q<T, D, CW>(P, q, k, v, rpb, lse, dsum, d_out, grads, ds);                                     \
    }                                                                                                             \
    extern "C" __global__ void __launch_bounds__(128) na2d_mma_bwd_kv_##TN##_d##D##_c##CW(                        \
        MmaParams P, const T* q, const T* k, const T* v, const float* rpb, const float* lse, const float* dsum,   \
        const T* d_out, T* grads) {                                                                               \
        na_mma_bwd_kv<T, D, CW>(P, q, k, v, rpb, lse, dsum, d_out, grads);                                        \
    }

#define MMA_NA_TYPE(T, TN)                                                                                        \
    MMA_NA_KERNELS(T, TN, 32, 16)                                                                                 \
    MMA_NA_KERNELS(T, TN, 32, 32)                                                                                 \
    MMA_NA_KERNELS(T, TN, 64, 16)                                                                                 \
    MMA_NA_KERNELS(T, TN, 64, 32)                                                                                 \
    extern "C" __global__ void na2d_mma_dot_##TN(MmaParams P, const T* out, const T* d_out, float* dsum) {       \
        na_mma_dot<T>(P, out, d_out, dsum);                                                                       \
    }

MMA_NA_TYPE(float, f32)
MMA_NA_TYPE(bf16_t, bf16)
