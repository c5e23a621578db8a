// Version 2 of the GPU GEMM: tensor cores through mma.sync (sm_80+, runs on Hopper), FP32 accumulate.
// What version 1 (gemm_simt.cu) lacks: the matrix units. 8x the FMA rate in TF32, 16x in BF16.
//
// C[z] = alpha * A[z] * B[z] + beta * C[z]; A m x k row-major (lda), B k x n row-major (ldb),
// C m x n row-major (ldc). The Rust side (kernels/src/cuda/gemm.rs) packs any other operand
// (transposed, strided, unaligned, or f32 for the bf16 kernel) with pack_* below first.
// Load bounds: A and B are read in 16-byte chunks, so k_load (columns of A = rows of B read) and
// n_load (columns of B read) are multiples of the chunk (4 f32 / 8 bf16); a chunk is wholly in or
// wholly out, and out-of-bounds chunks are zero-filled by cp.async (src-size 0). Rows of A beyond m
// are zero-filled the same way; stores are guarded by m and n. beta == 0: C is never read.
//
// Block tile 128 x 128 (8 warps as 2 (m) x 4 (n), warp tile 64 x 32 = 4 x 4 mma tiles, 4 stages)
// or 128 x 256 (warp tile 64 x 64 = 4 x 8 mma tiles: twice the mma per fragment load, 3 stages).
// K-step 16 (tf32) / 32 (bf16) per stage, stages filled by cp.async.cg (global -> shared, bypassing
// registers and L1), so STAGES - 1 tiles are in flight while one is multiplied.
// Shared memory is padded (A rows +16 bytes, B rows +8 elements) so fragment loads are conflict-free:
// A row stride 80 bytes = 20 words: the 8 rows an ldmatrix phase touches start at banks
// 0,20,8,28,16,4,24,12, each 4 words wide. B rows (BN + 8 elements): tf32 scalar loads of
// (k = t, n = g) hit bank 8t + g; bf16 ldmatrix rows start 4 banks apart, 4 words wide.
//
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k8 / m16n8k16"), g = lane / 4, t = lane % 4:
//   tf32 m16n8k8:  A a0 (g, t) a1 (g+8, t) a2 (g, t+4) a3 (g+8, t+4); B b0 (k=t, n=g) b1 (k=t+4, n=g)
//   bf16 m16n8k16: A a0 (g, 2t..2t+1) a1 (g+8, ..) a2 (g, 2t+8..2t+9) a3 (g+8, ..);
//                  B b0 (k=2t..2t+1, n=g) b1 (k=2t+8..2t+9, n=g)
//   C (both):      c0 (g, 2t) c1 (g, 2t+1) c2 (g+8, 2t) c3 (g+8, 2t+1)
// ldmatrix.x4 gives lane l the 32-bit word (row l/4, word l%4) of each of four 8 x 16-byte
// matrices, which is exactly the A fragment when lanes 0-15 point at rows 0-15 and lanes 16-31 at
// the same rows 16 bytes further; .trans gives the B fragment from a k-major (row-major B) tile.

#define MMA_THREADS 256

static __device__ __forceinline__ unsigned smem_u32(const void* p) {
    unsigned r;
    asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}

static __device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    unsigned s = smem_u32(dst);
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(n));
}

static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Wait until at most N groups are pending.
template <int N>
static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

static __device__ __forceinline__ void ldmatrix_x4(unsigned r[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

static __device__ __forceinline__ void ldmatrix_x4_trans(unsigned r[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

static __device__ __forceinline__ unsigned to_tf32(unsigned bits) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(__uint_as_float(bits)));
    return r;
}

static __device__ __forceinline__ void mma_tf32(float d[4], const unsigned a[4], const unsigned b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

static __device__ __forceinline__ void mma_bf16(float d[4], const unsigned a[4], const unsigned b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// alpha * acc + beta * C for the warp's (4*16) x (NT*8) tile, guarded by m and n.
template <int NT>
static __device__ __forceinline__ void store_c(float (&acc)[4][NT][4], float* c, long long ldc, int m, int n,
                                               int row0, int col0, float alpha, float beta) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int mi = 0; mi < 4; mi++) {
#pragma unroll
        for (int ni = 0; ni < NT; ni++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int row = row0 + mi * 16 + g + (e / 2) * 8;
                int col = col0 + ni * 8 + 2 * t + (e % 2);
                if (row < m && col < n) {
                    float* p = c + row * ldc + col;
                    *p = (beta == 0.0f) ? alpha * acc[mi][ni][e] : fmaf(alpha, acc[mi][ni][e], beta * *p);
                }
            }
        }
    }
}

// One block: 8 warps as 2 (m) x 4 (n); warp tile 64 x (NT*8); block tile 128 x (NT*32).
// T = float (TF32 path, K-step BK = 16) or unsigned short (BF16 path, BK = 32): BK * sizeof(T) = 64
// bytes, 4 chunks of 16 bytes per A row. VEC = elements per 16-byte chunk.
template <typename T, int NT, int STAGES>
struct MmaTile {
    static constexpr int BM = 128;
    static constexpr int BN = NT * 32;
    static constexpr int VEC = 16 / sizeof(T);
    static constexpr int BK = 4 * VEC;
    static constexpr int ALD = BK + VEC;      // A row in shared memory: +16 bytes
    static constexpr int BLD = BN + 8;        // B row in shared memory: +8 elements
    static constexpr int ASTAGE = BM * ALD;
    static constexpr int BSTAGE = BK * BLD;
    static constexpr int SMEM_BYTES = STAGES * (ASTAGE + BSTAGE) * sizeof(T);
    static constexpr int A_CHUNKS = BM * 4 / MMA_THREADS;          // per thread
    static constexpr int B_CHUNKS = BK * (BN / VEC) / MMA_THREADS;  // per thread
};

template <typename T, int NT, int STAGES>
static __device__ __forceinline__ void load_tile(T* as, T* bs, const T* a, const T* b, long long lda,
                                                 long long ldb, int m, int k_load, int n_load, int bm, int bn,
                                                 int stage, int kt) {
    using L = MmaTile<T, NT, STAGES>;
    const int tid = threadIdx.x;
    const int k0 = kt * L::BK;
#pragma unroll
    for (int r = 0; r < L::A_CHUNKS; r++) {
        int ch = tid + r * MMA_THREADS;
        int row = ch / 4, cc = ch % 4;
        int gr = bm + row, gk = k0 + cc * L::VEC;
        bool ok = gr < m && gk < k_load;
        cp_async16(as + stage * L::ASTAGE + row * L::ALD + cc * L::VEC, ok ? a + gr * lda + gk : a, ok);
    }
    constexpr int B_ROW_CHUNKS = L::BN / L::VEC;
#pragma unroll
    for (int r = 0; r < L::B_CHUNKS; r++) {
        int ch = tid + r * MMA_THREADS;
        int row = ch / B_ROW_CHUNKS, cc = ch % B_ROW_CHUNKS;
        int gk = k0 + row, gc = bn + cc * L::VEC;
        bool ok = gk < k_load && gc < n_load;
        cp_async16(bs + stage * L::BSTAGE + row * L::BLD + cc * L::VEC, ok ? b + gk * ldb + gc : b, ok);
    }
}

// The main loop, shared by both element types; IS_BF16 picks the fragment loads and the mma.
template <typename T, int NT, int STAGES>
static __device__ __forceinline__ void gemm_mma_body(int m, int n, int k_load, int n_load, float alpha,
                                                     const T* __restrict__ a, long long lda, long long a_batch,
                                                     const T* __restrict__ b, long long ldb, long long b_batch,
                                                     float beta, float* __restrict__ c, long long ldc,
                                                     long long c_batch) {
    using L = MmaTile<T, NT, STAGES>;
    constexpr bool IS_BF16 = sizeof(T) == 2;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* as = reinterpret_cast<T*>(smem_raw);
    T* bs = as + STAGES * L::ASTAGE;

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int wm = warp / 4, wn = warp % 4;
    const int g = lane / 4, t = lane % 4;
    const int bm = blockIdx.y * L::BM, bn = blockIdx.x * L::BN;
    a += blockIdx.z * a_batch;
    b += blockIdx.z * b_batch;
    c += blockIdx.z * c_batch;
    const int ktiles = (k_load + L::BK - 1) / L::BK;

    float acc[4][NT][4];
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int ni = 0; ni < NT; ni++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mi][ni][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < ktiles) load_tile<T, NT, STAGES>(as, bs, a, b, lda, ldb, m, k_load, n_load, bm, bn, s, s);
        cp_async_commit();
    }

    for (int kt = 0; kt < ktiles; kt++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // tile kt visible to all; everyone is done with the stage reloaded next
        int next = kt + STAGES - 1;
        if (next < ktiles)
            load_tile<T, NT, STAGES>(as, bs, a, b, lda, ldb, m, k_load, n_load, bm, bn, next % STAGES, next);
        cp_async_commit();

        const T* at = as + (kt % STAGES) * L::ASTAGE;
        const T* bt = bs + (kt % STAGES) * L::BSTAGE;
        // One mma K-step is 8 tf32 or 16 bf16 = 32 bytes of a row: two 16-byte chunks.
#pragma unroll
        for (int ks = 0; ks < 2; ks++) {
            unsigned af[4][4], bf[NT][2];
#pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                ldmatrix_x4(af[mi], at + (wm * 64 + mi * 16 + lane % 16) * L::ALD + ks * 2 * L::VEC +
                                        (lane / 16) * L::VEC);
                if constexpr (!IS_BF16) {
#pragma unroll
                    for (int e = 0; e < 4; e++) af[mi][e] = to_tf32(af[mi][e]);
                }
            }
            if constexpr (IS_BF16) {
#pragma unroll
                for (int p = 0; p < NT / 2; p++) {
                    unsigned r[4];
                    ldmatrix_x4_trans(r, bt + (ks * 16 + lane % 16) * L::BLD + wn * (NT * 8) + p * 16 + (lane / 16) * 8);
                    bf[2 * p][0] = r[0];
                    bf[2 * p][1] = r[1];
                    bf[2 * p + 1][0] = r[2];
                    bf[2 * p + 1][1] = r[3];
                }
            } else {
                const float* bf32 = reinterpret_cast<const float*>(bt);
#pragma unroll
                for (int ni = 0; ni < NT; ni++) {
                    const float* bp = bf32 + (ks * 8 + t) * L::BLD + wn * (NT * 8) + ni * 8 + g;
                    bf[ni][0] = to_tf32(__float_as_uint(bp[0]));
                    bf[ni][1] = to_tf32(__float_as_uint(bp[4 * L::BLD]));
                }
            }
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < NT; ni++) {
                    if constexpr (IS_BF16)
                        mma_bf16(acc[mi][ni], af[mi], bf[ni]);
                    else
                        mma_tf32(acc[mi][ni], af[mi], bf[ni]);
                }
        }
    }
    asm volatile("cp.async.wait_all;\n" ::);

    store_c<NT>(acc, c, ldc, m, n, bm + wm * 64, bn + wn * (NT * 8), alpha, beta);
}

// Kernels: <precision>_mma_<block tile>. Shared-memory bytes (dynamic, set by the Rust side):
//   tf32 128x128, 4 stages: 4 * (128*20 + 16*136) * 4 = 75776;  tf32 128x256, 3 stages: 3 * (128*20 + 16*264) * 4 = 81408
//   bf16 128x128, 4 stages: 4 * (128*40 + 32*136) * 2 = 75776;  bf16 128x256, 3 stages: 3 * (128*40 + 32*264) * 2 = 81408
#define MMA_PARAMS(T)                                                                                     \
    int m, int n, int k_load, int n_load, float alpha, const T *__restrict__ a, long long lda,           \
        long long a_batch, const T *__restrict__ b, long long ldb, long long b_batch, float beta,        \
        float *__restrict__ c, long long ldc, long long c_batch
#define MMA_ARGS m, n, k_load, n_load, alpha, a, lda, a_batch, b, ldb, b_batch, beta, c, ldc, c_batch

extern "C" __global__ void __launch_bounds__(MMA_THREADS) gemm_tf32_mma_128x128(MMA_PARAMS(float)) {
    gemm_mma_body<float, 4, 4>(MMA_ARGS);
}
extern "C" __global__ void __launch_bounds__(MMA_THREADS) gemm_tf32_mma_128x256(MMA_PARAMS(float)) {
    gemm_mma_body<float, 8, 3>(MMA_ARGS);
}
extern "C" __global__ void __launch_bounds__(MMA_THREADS) gemm_bf16_mma_128x128(MMA_PARAMS(unsigned short)) {
    gemm_mma_body<unsigned short, 4, 4>(MMA_ARGS);
}
extern "C" __global__ void __launch_bounds__(MMA_THREADS) gemm_bf16_mma_128x256(MMA_PARAMS(unsigned short)) {
    gemm_mma_body<unsigned short, 8, 3>(MMA_ARGS);
}

// ---------------------------------------------------------------- packing
// dst[z] (rows_pad x cols_pad, row-major) = src[z] (rows x cols, element (i, j) at i*rs + j*cs),
// zero outside rows x cols. Turns any operand into what the mma kernels read.
extern "C" __global__ void pack_f32(const float* __restrict__ src, long long rs, long long cs, long long src_batch,
                                    int rows, int cols, float* __restrict__ dst, int rows_pad, int cols_pad,
                                    long long dst_batch) {
    src += blockIdx.z * src_batch;
    dst += blockIdx.z * dst_batch;
    long long total = (long long)rows_pad * cols_pad;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        int i = (int)(e / cols_pad), j = (int)(e % cols_pad);
        dst[e] = (i < rows && j < cols) ? src[i * rs + j * cs] : 0.0f;
    }
}

extern "C" __global__ void pack_f32_to_bf16(const float* __restrict__ src, long long rs, long long cs,
                                            long long src_batch, int rows, int cols,
                                            unsigned short* __restrict__ dst, int rows_pad, int cols_pad,
                                            long long dst_batch) {
    src += blockIdx.z * src_batch;
    dst += blockIdx.z * dst_batch;
    long long total = (long long)rows_pad * cols_pad;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        int i = (int)(e / cols_pad), j = (int)(e % cols_pad);
        float v = (i < rows && j < cols) ? src[i * rs + j * cs] : 0.0f;
        unsigned short h;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
        dst[e] = h;
    }
}
