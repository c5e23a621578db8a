// 2-D neighborhood attention forward and backward (SIMT, FP32 accumulation), f32 or bf16 storage.
// Definition: docs/neighborhood-attention.md; design: docs/gpu-attention.md. No headers (NVRTC);
// bf16 is stored as unsigned short.
//
// Tiling is in DILATION-GROUP units: a block owns tile_r x tile_c queries (or keys) of one row
// group gr and one column group gc (positions g, g+dil, g+2 dil, ...), so the windows of its
// queries are contiguous ranges of the same group and their union (the halo) is a small rectangle.
// G = 4 lanes per query (per key in the dK/dV pass), each holding DMAX/4 dims of the head in
// registers (DMAX >= d); dot products are finished with two warp shuffles.
// SMEM = true: the halo is staged in shared memory as f32 (row stride d|1: odd, no bank conflicts);
// false: the same loops read global memory (for windows too large for shared memory).
//
// Kernels (T = f32 | bf16, DMAX = 32 | 64 | 128, SMEM = smem | global):
//   na2d_fwd_*      out, and attn (probabilities, f32) when write_attn
//   na2d_bwd_q_*    dA = dO V^T, D = sum A dA, dS = A (dA - D) into the ds buffer, dQ = s dS K
//   na2d_bwd_kv_*   dV = sum A^T dO, dK = s sum dS^T Q over each key's inverse neighbourhood
//                   and, when asked, the tile's d(rpb) partial table (fixed order)
//   na2d_rpb_reduce   the partials added in (batch, tile) order: deterministic, no atomics anywhere.

typedef unsigned short bf16_t;

static __device__ __forceinline__ float ld(const float* p) { return *p; }
static __device__ __forceinline__ float ld(const bf16_t* p) {
    return __uint_as_float(((unsigned)*p) << 16);
}
static __device__ __forceinline__ void st(float* p, float v) { *p = v; }
static __device__ __forceinline__ void st(bf16_t* p, float v) {
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
    *p = h;
}

// Element strides of a [batch, rows, cols, heads, head_dim] view (head_dim contiguous).
struct View {
    long long offset, batch, row, col, head;
};
static __device__ __forceinline__ long long at(const View& v, int b, int y, int x, int h) {
    return v.offset + b * v.batch + y * v.row + x * v.col + h * v.head;
}

// Mirrors NaParams in kernels/src/cuda/neighborhood_attention.rs (same order, 320 bytes).
struct NaParams {
    View q, k, v, dq, dk, dv;
    int batch, height, width, heads, dim;
    int kh, kw, dil_h, dil_w;
    int tile_r, tile_c;  // queries (keys) per block along each axis, group units
    int tiles_r, tiles_c;  // tiles per dilation group along each axis
    int has_rpb, write_attn;
    int want_drpb;  // backward: write d(rpb) partials (one table per block of na2d_bwd_q)
    int blocks_x;   // gridDim.x of the query-tile passes
    float scale;
};

static __device__ __forceinline__ int group_len(int len, int dil, int g) {
    return g >= len ? 0 : (len - g + dil - 1) / dil;
}
// Window start in group units of index idx in a group of length n (k' = min(k, n)).
static __device__ __forceinline__ int start_g(int idx, int n, int k) {
    int kk = min(k, n);
    return min(max(idx - kk / 2, 0), n - kk);
}
// Lowest query (group units) whose window holds key a.
static __device__ __forceinline__ int inv_lo(int a, int n, int k) {
    int kk = min(k, n);
    int right = kk - 1 - kk / 2;
    return a < kk ? 0 : a - right;
}
// Highest query (group units) whose window holds key a.
static __device__ __forceinline__ int inv_hi(int a, int n, int k) {
    int kk = min(k, n);
    return a >= n - kk ? n - 1 : a + kk / 2;
}

// Which block of which dilation groups: fills group ids, group lengths and the tile's first index.
struct Tile {
    int b, h, gr, gc, nr, nc, t0r, t0c, t1r, t1c;
};
static __device__ __forceinline__ Tile tile_of(const NaParams& P) {
    Tile t;
    t.b = blockIdx.y / P.heads;
    t.h = blockIdx.y % P.heads;
    int per_row = P.dil_w * P.tiles_c;
    int rt = blockIdx.x / per_row, ct = blockIdx.x % per_row;
    t.gr = rt / P.tiles_r;
    t.t0r = (rt % P.tiles_r) * P.tile_r;
    t.gc = ct / P.tiles_c;
    t.t0c = (ct % P.tiles_c) * P.tile_c;
    t.nr = group_len(P.height, P.dil_h, t.gr);
    t.nc = group_len(P.width, P.dil_w, t.gc);
    t.t1r = min(t.t0r + P.tile_r, t.nr);
    t.t1c = min(t.t0c + P.tile_c, t.nc);
    return t;
}

// Stage rows [r0, r0+rn) x cols [c0, c0+cn) (group units) of two views into shared memory (f32).
template <typename T>
static __device__ __forceinline__ void stage2(float* s1, float* s2, const T* x1, const View& v1,
                                              const T* x2, const View& v2, const NaParams& P,
                                              const Tile& t, int r0, int rn, int c0, int cn) {
    int d = P.dim, stride = d | 1;
    int total = rn * cn * d;
    for (int e = threadIdx.x; e < total; e += blockDim.x) {
        int c = e % d, key = e / d;
        int y = (r0 + key / cn) * P.dil_h + t.gr, x = (c0 + key % cn) * P.dil_w + t.gc;
        s1[key * stride + c] = ld(x1 + at(v1, t.b, y, x, t.h) + c);
        s2[key * stride + c] = ld(x2 + at(v2, t.b, y, x, t.h) + c);
    }
}

// G lanes share one query (key): lane `part` holds dims part*DPT .. part*DPT+DPT-1 (DPT = DMAX/G)
// in registers; a dot product is DPT FMAs then two butterfly shuffles (fixed order: the sum is
// bitwise identical on all G lanes and across runs).
#define G 4

template <int DPT, typename P>
static __device__ __forceinline__ float dot_part(const float* a, const P* row, int c0, int d) {
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < DPT; ++i)
        if (c0 + i < d) s = fmaf(a[i], ld(row + c0 + i), s);
    return s;
}
static __device__ __forceinline__ float group_sum(float s) {
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    s += __shfl_xor_sync(0xffffffffu, s, 2);
    return s;
}
template <int DPT, typename P>
static __device__ __forceinline__ void axpy_part(float* acc, float w, const P* row, int c0, int d) {
#pragma unroll
    for (int i = 0; i < DPT; ++i)
        if (c0 + i < d) acc[i] = fmaf(w, ld(row + c0 + i), acc[i]);
}

// The block's halo (group units) for its queries' windows.
struct Halo {
    int r0, rn, c0, cn;
};
static __device__ __forceinline__ Halo window_halo(const NaParams& P, const Tile& t) {
    int kr = min(P.kh, t.nr), kc = min(P.kw, t.nc);
    Halo o;
    o.r0 = start_g(t.t0r, t.nr, P.kh);
    o.rn = start_g(t.t1r - 1, t.nr, P.kh) + kr - o.r0;
    o.c0 = start_g(t.t0c, t.nc, P.kw);
    o.cn = start_g(t.t1c - 1, t.nc, P.kw) + kc - o.c0;
    return o;
}

// This thread's row (query or key) of the tile, clamped into the tile so that every lane of a
// warp runs the same loops (shuffles need all lanes); `live` says whether it writes.
struct Row {
    int i, j, part, c0;
    bool live;
};
static __device__ __forceinline__ Row row_of(const NaParams& P, const Tile& t, int dpt) {
    Row r;
    int q = threadIdx.x / G;
    r.part = threadIdx.x % G;
    r.c0 = r.part * dpt;
    int i = t.t0r + q / P.tile_c, j = t.t0c + q % P.tile_c;
    r.live = i < t.t1r && j < t.t1c;
    r.i = min(i, t.t1r - 1);
    r.j = min(j, t.t1c - 1);
    return r;
}

// ---------------------------------------------------------------------------------------------
// Forward: online softmax over the window; logits parked in attn (own slots) when write_attn.
template <typename T, int DMAX, bool SMEM>
static __device__ void na_fwd(const NaParams& P, const T* q, const T* k, const T* v, const float* rpb,
                              T* out, float* attn) {
    constexpr int DPT = DMAX / G;
    extern __shared__ float smem[];
    Tile t = tile_of(P);
    if (t.t0r >= t.nr || t.t0c >= t.nc) return;  // uniform over the block
    int kr = min(P.kh, t.nr), kc = min(P.kw, t.nc);
    Halo hl = window_halo(P, t);
    int d = P.dim, stride = d | 1;
    float* ks = smem;
    float* vs = smem + hl.rn * hl.cn * stride;
    if (SMEM) {
        stage2(ks, vs, k, P.k, v, P.v, P, t, hl.r0, hl.rn, hl.c0, hl.cn);
        __syncthreads();
    }
    Row r = row_of(P, t, DPT);
    int y = r.i * P.dil_h + t.gr, x = r.j * P.dil_w + t.gc;
    float qr[DPT], o[DPT];
    const T* qp = q + at(P.q, t.b, y, x, t.h);
#pragma unroll
    for (int c = 0; c < DPT; ++c) {
        qr[c] = r.c0 + c < d ? ld(qp + r.c0 + c) * P.scale : 0.f;
        o[c] = 0.f;
    }
    int sr = start_g(r.i, t.nr, P.kh), sc = start_g(r.j, t.nc, P.kw);
    int bw = 2 * P.kw - 1;
    const float* tb = rpb + (long long)t.h * (2 * P.kh - 1) * bw + (sr + P.kh - 1 - r.i) * bw +
                      (sc + P.kw - 1 - r.j);
    int slots = P.kh * P.kw;
    float* ap = attn + ((((long long)t.b * P.heads + t.h) * P.height + y) * P.width + x) * slots;
    bool writer = r.live && r.part == 0 && P.write_attn;
    float m = -__int_as_float(0x7f800000), l = 0.f;
    for (int a = 0; a < kr; ++a) {
        for (int c2 = 0; c2 < kc; ++c2) {
            float s;
            const float* vrow_s = nullptr;
            const T* vrow_g = nullptr;
            if (SMEM) {
                int key = (sr + a - hl.r0) * hl.cn + (sc + c2 - hl.c0);
                s = dot_part<DPT>(qr, ks + key * stride, r.c0, d);
                vrow_s = vs + key * stride;
            } else {
                int ky = (sr + a) * P.dil_h + t.gr, kx = (sc + c2) * P.dil_w + t.gc;
                s = dot_part<DPT>(qr, k + at(P.k, t.b, ky, kx, t.h), r.c0, d);
                vrow_g = v + at(P.v, t.b, ky, kx, t.h);
            }
            s = group_sum(s);
            if (P.has_rpb) s += tb[a * bw + c2];
            if (writer) ap[a * P.kw + c2] = s;
            if (s > m) {  // rescale only when the max moves (alpha = 0 on the first key)
                float alpha = expf(m - s);
                l *= alpha;
#pragma unroll
                for (int c = 0; c < DPT; ++c) o[c] *= alpha;
                m = s;
            }
            float p = expf(s - m);
            l += p;
            if (SMEM) axpy_part<DPT>(o, p, vrow_s, r.c0, d);
            else axpy_part<DPT>(o, p, vrow_g, r.c0, d);
        }
    }
    __syncwarp();  // lane 0's logits visible to the group
    if (!r.live) return;
    float inv = 1.f / l;
    T* op = out + ((((long long)t.b * P.height + y) * P.width + x) * P.heads + t.h) * d;
#pragma unroll
    for (int c = 0; c < DPT; ++c)
        if (r.c0 + c < d) st(op + r.c0 + c, o[c] * inv);
    if (P.write_attn) {
        for (int slot = r.part; slot < slots; slot += G) {
            int a = slot / P.kw, c2 = slot % P.kw;
            ap[slot] = (a < kr && c2 < kc) ? expf(ap[slot] - m) * inv : 0.f;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backward 1, per query: ds (shape of attn) and dQ.
template <typename T, int DMAX, bool SMEM>
static __device__ void na_bwd_q(const NaParams& P, const T* k, const T* v, const float* attn,
                                const T* d_out, float* ds, T* grads, float* partial) {
    constexpr int DPT = DMAX / G;
    extern __shared__ float smem[];
    Tile t = tile_of(P);
    int table = (2 * P.kh - 1) * (2 * P.kw - 1);
    float* part = partial + ((long long)blockIdx.y * gridDim.x + blockIdx.x) * table;
    if (t.t0r >= t.nr || t.t0c >= t.nc) {  // an empty tile of a short dilation group
        if (P.want_drpb)
            for (int e = threadIdx.x; e < table; e += blockDim.x) part[e] = 0.f;
        return;
    }
    int kr = min(P.kh, t.nr), kc = min(P.kw, t.nc);
    Halo hl = window_halo(P, t);
    int d = P.dim, stride = d | 1;
    float* ks = smem;
    float* vs = smem + hl.rn * hl.cn * stride;
    if (SMEM) {
        stage2(ks, vs, k, P.k, v, P.v, P, t, hl.r0, hl.rn, hl.c0, hl.cn);
        __syncthreads();
    }
    Row r = row_of(P, t, DPT);
    int y = r.i * P.dil_h + t.gr, x = r.j * P.dil_w + t.gc;
    float go[DPT], dq[DPT];
    const T* gp = d_out + ((((long long)t.b * P.height + y) * P.width + x) * P.heads + t.h) * d;
#pragma unroll
    for (int c = 0; c < DPT; ++c) {
        go[c] = r.c0 + c < d ? ld(gp + r.c0 + c) : 0.f;
        dq[c] = 0.f;
    }
    int sr = start_g(r.i, t.nr, P.kh), sc = start_g(r.j, t.nc, P.kw);
    int slots = P.kh * P.kw;
    long long qa = ((((long long)t.b * P.heads + t.h) * P.height + y) * P.width + x) * slots;
    const float* ap = attn + qa;
    float* dsp = ds + qa;
    bool writer = r.live && r.part == 0;
    float dsum = 0.f;
    // dA = <dO, V_n> for the window, parked in ds by lane 0 of the group; D = sum A dA.
    for (int a = 0; a < kr; ++a)
        for (int c2 = 0; c2 < kc; ++c2) {
            float da;
            if (SMEM) {
                int key = (sr + a - hl.r0) * hl.cn + (sc + c2 - hl.c0);
                da = dot_part<DPT>(go, vs + key * stride, r.c0, d);
            } else {
                int ky = (sr + a) * P.dil_h + t.gr, kx = (sc + c2) * P.dil_w + t.gc;
                da = dot_part<DPT>(go, v + at(P.v, t.b, ky, kx, t.h), r.c0, d);
            }
            da = group_sum(da);
            if (writer) dsp[a * P.kw + c2] = da;
            dsum = fmaf(ap[a * P.kw + c2], da, dsum);
        }
    __syncwarp();  // lane 0's dA visible to the group
    // dS = A (dA - D); dQ = s sum dS K.
    for (int a = 0; a < kr; ++a)
        for (int c2 = 0; c2 < kc; ++c2) {
            int slot = a * P.kw + c2;
            float g = ap[slot] * (dsp[slot] - dsum);
            if (SMEM) {
                int key = (sr + a - hl.r0) * hl.cn + (sc + c2 - hl.c0);
                axpy_part<DPT>(dq, g, ks + key * stride, r.c0, d);
            } else {
                int ky = (sr + a) * P.dil_h + t.gr, kx = (sc + c2) * P.dil_w + t.gc;
                axpy_part<DPT>(dq, g, k + at(P.k, t.b, ky, kx, t.h), r.c0, d);
            }
        }
    __syncwarp();  // every lane has read dA before it is overwritten by dS
    if (r.live) {
        for (int slot = r.part; slot < slots; slot += G) {
            int a = slot / P.kw, c2 = slot % P.kw;
            dsp[slot] = (a < kr && c2 < kc) ? ap[slot] * (dsp[slot] - dsum) : 0.f;
        }
        T* out = grads + at(P.dq, t.b, y, x, t.h);
#pragma unroll
        for (int c = 0; c < DPT; ++c)
            if (r.c0 + c < d) st(out + r.c0 + c, dq[c] * P.scale);
    }
    if (!P.want_drpb) return;
    // d(rpb) partial of this tile: one thread per table entry, the tile's queries in row-major
    // order (fixed), reading the dS this block just wrote (visible after the barrier).
    __syncthreads();
    int tw = 2 * P.kw - 1;
    long long plane = ((long long)t.b * P.heads + t.h) * P.height;
    for (int e = threadIdx.x; e < table; e += blockDim.x) {
        int er = e / tw, ec = e % tw;
        float acc = 0.f;
        for (int qi = t.t0r; qi < t.t1r; ++qi) {
            int tr = er - (start_g(qi, t.nr, P.kh) + P.kh - 1 - qi);
            if (tr < 0 || tr >= kr) continue;
            long long rowbase = (plane + qi * P.dil_h + t.gr) * P.width;
            for (int qj = t.t0c; qj < t.t1c; ++qj) {
                int tc = ec - (start_g(qj, t.nc, P.kw) + P.kw - 1 - qj);
                if (tc < 0 || tc >= kc) continue;
                acc += ds[(rowbase + qj * P.dil_w + t.gc) * slots + tr * P.kw + tc];
            }
        }
        part[e] = acc;
    }
}

// ---------------------------------------------------------------------------------------------
// Backward 2, per key: dV and dK gathered over the inverse neighbourhood (fixed order, no atomics).
template <typename T, int DMAX, bool SMEM>
static __device__ void na_bwd_kv(const NaParams& P, const T* q, const float* attn, const T* d_out,
                                 const float* ds, T* grads) {
    constexpr int DPT = DMAX / G;
    extern __shared__ float smem[];
    Tile t = tile_of(P);
    if (t.t0r >= t.nr || t.t0c >= t.nc) return;
    int hr0 = inv_lo(t.t0r, t.nr, P.kh), hrn = inv_hi(t.t1r - 1, t.nr, P.kh) + 1 - hr0;
    int hc0 = inv_lo(t.t0c, t.nc, P.kw), hcn = inv_hi(t.t1c - 1, t.nc, P.kw) + 1 - hc0;
    int d = P.dim, stride = d | 1;
    float* qs = smem;
    float* gs = smem + hrn * hcn * stride;
    View ov;  // d_out / out layout: contiguous [B, H, W, heads, d]
    ov.offset = 0;
    ov.head = d;
    ov.col = (long long)P.heads * d;
    ov.row = ov.col * P.width;
    ov.batch = ov.row * P.height;
    if (SMEM) {
        stage2(qs, gs, q, P.q, d_out, ov, P, t, hr0, hrn, hc0, hcn);
        __syncthreads();
    }
    Row r = row_of(P, t, DPT);
    if (!r.live) return;  // no shuffles below
    int ai = r.i, aj = r.j;
    float dk[DPT], dv[DPT];
#pragma unroll
    for (int c = 0; c < DPT; ++c) {
        dk[c] = 0.f;
        dv[c] = 0.f;
    }
    int lr = inv_lo(ai, t.nr, P.kh), ur = inv_hi(ai, t.nr, P.kh);
    int lc = inv_lo(aj, t.nc, P.kw), uc = inv_hi(aj, t.nc, P.kw);
    int slots = P.kh * P.kw;
    for (int qi = lr; qi <= ur; ++qi) {
        int tr = ai - start_g(qi, t.nr, P.kh);
        int y = qi * P.dil_h + t.gr;
        for (int qj = lc; qj <= uc; ++qj) {
            int tc = aj - start_g(qj, t.nc, P.kw);
            int x = qj * P.dil_w + t.gc;
            long long qa = ((((long long)t.b * P.heads + t.h) * P.height + y) * P.width + x) * slots +
                           tr * P.kw + tc;
            float pa = attn[qa], g = ds[qa];
            if (SMEM) {
                int key = (qi - hr0) * hcn + (qj - hc0);
                axpy_part<DPT>(dv, pa, gs + key * stride, r.c0, d);
                axpy_part<DPT>(dk, g, qs + key * stride, r.c0, d);
            } else {
                axpy_part<DPT>(dv, pa, d_out + at(ov, t.b, y, x, t.h), r.c0, d);
                axpy_part<DPT>(dk, g, q + at(P.q, t.b, y, x, t.h), r.c0, d);
            }
        }
    }
    int ky = ai * P.dil_h + t.gr, kx = aj * P.dil_w + t.gc;
    T* pk = grads + at(P.dk, t.b, ky, kx, t.h);
    T* pv = grads + at(P.dv, t.b, ky, kx, t.h);
#pragma unroll
    for (int c = 0; c < DPT; ++c)
        if (r.c0 + c < d) {
            st(pk + r.c0 + c, dk[c] * P.scale);
            st(pv + r.c0 + c, dv[c]);
        }
}

// ---------------------------------------------------------------------------------------------
// d_rpb[h][entry] = sum over (b, tile) in order of the per-block partials of na2d_bwd_q.
extern "C" __global__ void na2d_rpb_reduce(NaParams P, const float* partial, float* d_rpb) {
    int table = (2 * P.kh - 1) * (2 * P.kw - 1);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P.heads * table) return;
    int h = i / table, e = i % table;
    float acc = 0.f;
    for (int b = 0; b < P.batch; ++b) {
        const float* src = partial + ((long long)b * P.heads + h) * P.blocks_x * table + e;
        for (int x = 0; x < P.blocks_x; ++x) acc += src[(long long)x * table];
    }
    d_rpb[i] = acc;
}

#define NA_KERNELS(T, TN, DMAX, SMEM, SN)                                                            \
    extern "C" __global__ void na2d_fwd_##TN##_d##DMAX##_##SN(NaParams P, const T* q, const T* k,    \
                                                              const T* v, const float* rpb, T* out, \
                                                              float* attn) {                        \
        na_fwd<T, DMAX, SMEM>(P, q, k, v, rpb, out, attn);                                          \
    }                                                                                                \
    extern "C" __global__ void na2d_bwd_q_##TN##_d##DMAX##_##SN(                                     \
        NaParams P, const T* k, const T* v, const float* attn, const T* d_out, float* ds, T* grads,    \
        float* partial) {                                                                            \
        na_bwd_q<T, DMAX, SMEM>(P, k, v, attn, d_out, ds, grads, partial);                          \
    }                                                                                                \
    extern "C" __global__ void na2d_bwd_kv_##TN##_d##DMAX##_##SN(                                    \
        NaParams P, const T* q, const float* attn, const T* d_out, const float* ds, T* grads) {      \
        na_bwd_kv<T, DMAX, SMEM>(P, q, attn, d_out, ds, grads);                                     \
    }

#define NA_DIMS(T, TN, SMEM, SN)       \
    NA_KERNELS(T, TN, 32, SMEM, SN)    \
    NA_KERNELS(T, TN, 64, SMEM, SN)    \
    NA_KERNELS(T, TN, 128, SMEM, SN)

NA_DIMS(float, f32, true, smem)
NA_DIMS(float, f32, false, global)
NA_DIMS(bf16_t, bf16, true, smem)
NA_DIMS(bf16_t, bf16, false, global)
