// Full self-attention, flash style (SIMT, FP32 accumulation), f32 or bf16 storage.
// Math: docs/attention.md; design: docs/gpu-attention.md. No headers (NVRTC); bf16 = unsigned short.
//
// One thread per query (forward, dQ pass) or per key (dK/dV pass), the head dim in registers
// (DMAX >= d); blocks of BLOCK rows stage tiles of BLOCK keys (or queries) in shared memory as f32,
// read by every thread at the same address (broadcast, no bank conflicts).
//   attn_fwd_*     online softmax over key tiles; out and lse = m + ln l
//   attn_bwd_q_*   D = <dO, O> (saved for the next pass), P recomputed from lse, dQ = s dS K
//   attn_bwd_kv_*  per key tile, over every query tile in order: dV = P^T dO, dK = s dS^T Q
// Each gradient row is summed by one thread in a fixed order: deterministic, no atomics.

typedef unsigned short bf16_t;
#define BLOCK 64

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

struct View {
    long long offset, batch, row, col, head;
};
// Token t of batch b, head h (one image row: the row stride is unused).
static __device__ __forceinline__ long long tok(const View& v, int b, int t, int h) {
    return v.offset + b * v.batch + t * v.col + h * v.head;
}

// Mirrors AttnParams in kernels/src/cuda/attention.rs (same order, 256 bytes).
struct AttnParams {
    View q, k, v, dq, dk, dv;
    int batch, tokens, heads, dim;
    float scale;
    int pad;
};

template <int DMAX>
static __device__ __forceinline__ float dot(const float* a, const float* b, int d) {
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < DMAX; ++c)
        if (c < d) s = fmaf(a[c], b[c], s);
    return s;
}
template <int DMAX>
static __device__ __forceinline__ void axpy(float* acc, float w, const float* x, int d) {
#pragma unroll
    for (int c = 0; c < DMAX; ++c)
        if (c < d) acc[c] = fmaf(w, x[c], acc[c]);
}

// Stage rows t0..t0+BLOCK of two token views (zeros past the end) into shared memory.
template <typename T>
static __device__ __forceinline__ void stage2(float* s1, float* s2, const T* x1, const View& v1,
                                              const T* x2, const View& v2, int b, int h, int t0,
                                              int n, int d) {
    for (int e = threadIdx.x; e < BLOCK * d; e += blockDim.x) {
        int r = e / d, c = e % d, t = t0 + r;
        s1[e] = t < n ? ld(x1 + tok(v1, b, t, h) + c) : 0.f;
        s2[e] = t < n ? ld(x2 + tok(v2, b, t, h) + c) : 0.f;
    }
}

template <typename T, int DMAX>
static __device__ void attn_fwd(const AttnParams& P, const T* q, const T* k, const T* v, T* out,
                                float* lse) {
    extern __shared__ float smem[];
    int d = P.dim, n = P.tokens;
    int b = blockIdx.y / P.heads, h = blockIdx.y % P.heads;
    int i = blockIdx.x * BLOCK + threadIdx.x;
    bool live = i < n;
    float* ks = smem;
    float* vs = smem + BLOCK * d;
    float qr[DMAX], o[DMAX];
    const T* qp = q + tok(P.q, b, live ? i : 0, h);
#pragma unroll
    for (int c = 0; c < DMAX; ++c) {
        qr[c] = c < d ? ld(qp + c) * P.scale : 0.f;
        o[c] = 0.f;
    }
    float m = -__int_as_float(0x7f800000), l = 0.f;
    for (int j0 = 0; j0 < n; j0 += BLOCK) {
        __syncthreads();
        stage2(ks, vs, k, P.k, v, P.v, b, h, j0, n, d);
        __syncthreads();
        int nk = min(BLOCK, n - j0);
        for (int j = 0; j < nk; ++j) {
            float s = dot<DMAX>(qr, ks + j * d, d);
            if (s > m) {
                float alpha = expf(m - s);
                l *= alpha;
#pragma unroll
                for (int c = 0; c < DMAX; ++c) o[c] *= alpha;
                m = s;
            }
            float p = expf(s - m);
            l += p;
            axpy<DMAX>(o, p, vs + j * d, d);
        }
    }
    if (!live) return;
    float inv = 1.f / l;
    T* op = out + (((long long)b * n + i) * P.heads + h) * d;
#pragma unroll
    for (int c = 0; c < DMAX; ++c)
        if (c < d) st(op + c, o[c] * inv);
    lse[((long long)b * P.heads + h) * n + i] = m + logf(l);
}

template <typename T, int DMAX>
static __device__ void attn_bwd_q(const AttnParams& P, const T* q, const T* k, const T* v,
                                  const T* out, const float* lse, const T* d_out, float* dsum,
                                  T* grads) {
    extern __shared__ float smem[];
    int d = P.dim, n = P.tokens;
    int b = blockIdx.y / P.heads, h = blockIdx.y % P.heads;
    int i = blockIdx.x * BLOCK + threadIdx.x;
    bool live = i < n;
    int ii = live ? i : 0;
    float* ks = smem;
    float* vs = smem + BLOCK * d;
    float qr[DMAX], go[DMAX], dq[DMAX];
    const T* qp = q + tok(P.q, b, ii, h);
    long long orow = (((long long)b * n + ii) * P.heads + h) * d;
    float D = 0.f;
#pragma unroll
    for (int c = 0; c < DMAX; ++c) {
        qr[c] = c < d ? ld(qp + c) * P.scale : 0.f;
        go[c] = c < d ? ld(d_out + orow + c) : 0.f;
        if (c < d) D = fmaf(go[c], ld(out + orow + c), D);
        dq[c] = 0.f;
    }
    long long li = ((long long)b * P.heads + h) * n + ii;
    float L = lse[li];
    if (live) dsum[li] = D;
    for (int j0 = 0; j0 < n; j0 += BLOCK) {
        __syncthreads();
        stage2(ks, vs, k, P.k, v, P.v, b, h, j0, n, d);
        __syncthreads();
        int nk = min(BLOCK, n - j0);
        for (int j = 0; j < nk; ++j) {
            float p = expf(dot<DMAX>(qr, ks + j * d, d) - L);
            float dp = dot<DMAX>(go, vs + j * d, d);
            axpy<DMAX>(dq, p * (dp - D), ks + j * d, d);
        }
    }
    if (!live) return;
    T* gp = grads + tok(P.dq, b, i, h);
#pragma unroll
    for (int c = 0; c < DMAX; ++c)
        if (c < d) st(gp + c, dq[c] * P.scale);
}

template <typename T, int DMAX>
static __device__ void attn_bwd_kv(const AttnParams& P, const T* q, const T* k, const T* v,
                                   const float* lse, const T* d_out, const float* dsum, T* grads) {
    extern __shared__ float smem[];
    int d = P.dim, n = P.tokens;
    int b = blockIdx.y / P.heads, h = blockIdx.y % P.heads;
    int j = blockIdx.x * BLOCK + threadIdx.x;
    bool live = j < n;
    int jj = live ? j : 0;
    float* qs = smem;
    float* gs = smem + BLOCK * d;
    float* ls = smem + 2 * BLOCK * d;
    float* Ds = ls + BLOCK;
    float kr[DMAX], vr[DMAX], dk[DMAX], dv[DMAX];
    const T* kp = k + tok(P.k, b, jj, h);
    const T* vp = v + tok(P.v, b, jj, h);
#pragma unroll
    for (int c = 0; c < DMAX; ++c) {
        kr[c] = c < d ? ld(kp + c) * P.scale : 0.f;
        vr[c] = c < d ? ld(vp + c) : 0.f;
        dk[c] = 0.f;
        dv[c] = 0.f;
    }
    View ov;
    ov.offset = 0;
    ov.head = d;
    ov.col = (long long)P.heads * d;
    ov.row = 0;
    ov.batch = ov.col * n;
    const float* lrow = lse + ((long long)b * P.heads + h) * n;
    const float* drow = dsum + ((long long)b * P.heads + h) * n;
    for (int i0 = 0; i0 < n; i0 += BLOCK) {
        __syncthreads();
        stage2(qs, gs, q, P.q, d_out, ov, b, h, i0, n, d);
        for (int r = threadIdx.x; r < BLOCK; r += blockDim.x) {
            ls[r] = i0 + r < n ? lrow[i0 + r] : 0.f;
            Ds[r] = i0 + r < n ? drow[i0 + r] : 0.f;
        }
        __syncthreads();
        int nq = min(BLOCK, n - i0);
        for (int r = 0; r < nq; ++r) {
            float p = expf(dot<DMAX>(kr, qs + r * d, d) - ls[r]);
            float dp = dot<DMAX>(vr, gs + r * d, d);
            axpy<DMAX>(dv, p, gs + r * d, d);
            axpy<DMAX>(dk, p * (dp - Ds[r]), qs + r * d, d);
        }
    }
    if (!live) return;
    T* gk = grads + tok(P.dk, b, j, h);
    T* gv = grads + tok(P.dv, b, j, h);
#pragma unroll
    for (int c = 0; c < DMAX; ++c)
        if (c < d) {
            st(gk + c, dk[c] * P.scale);
            st(gv + c, dv[c]);
        }
}

#define ATTN_KERNELS(T, TN, DMAX)                                                                  \
    extern "C" __global__ void __launch_bounds__(BLOCK) attn_fwd_##TN##_d##DMAX(                   \
        AttnParams P, const T* q, const T* k, const T* v, T* out, float* lse) {                    \
        attn_fwd<T, DMAX>(P, q, k, v, out, lse);                                                   \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(BLOCK) attn_bwd_q_##TN##_d##DMAX(                 \
        AttnParams P, const T* q, const T* k, const T* v, const T* out, const float* lse,          \
        const T* d_out, float* dsum, T* grads) {                                                   \
        attn_bwd_q<T, DMAX>(P, q, k, v, out, lse, d_out, dsum, grads);                             \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(BLOCK) attn_bwd_kv_##TN##_d##DMAX(                \
        AttnParams P, const T* q, const T* k, const T* v, const float* lse, const T* d_out,        \
        const float* dsum, T* grads) {                                                             \
        attn_bwd_kv<T, DMAX>(P, q, k, v, lse, d_out, dsum, grads);                                 \
    }

ATTN_KERNELS(float, f32, 32)
ATTN_KERNELS(float, f32, 64)
ATTN_KERNELS(float, f32, 128)
ATTN_KERNELS(bf16_t, bf16, 32)
ATTN_KERNELS(bf16_t, bf16, 64)
ATTN_KERNELS(bf16_t, bf16, 128)
