// Version 3 of the GPU GEMM: Hopper tensor cores through wgmma.mma_async (sm_90a only), operands
// brought into shared memory by the tensor-memory accelerator (TMA, cp.async.bulk.tensor), an
// mbarrier pipeline, and warp specialisation. Math and layouts: docs/gpu.md ("wgmma path").
//
// C[z] = alpha * A[z] * B[z] + beta * C[z]; A m x k row-major (K-major), pitch a multiple of 16 bytes;
// B K-major, given as B^T: n x k row-major, or (bf16 only, gemm_bf16n_*) N-major: k x n row-major.
// The Rust side (kernels/src/cuda/gemm_wgmma.rs) makes the 3-d tensor maps (k, rows, batch) with
// cuTensorMapEncodeTiled, box (128 bytes of k) x (BM or BN rows) x 1, 128-byte swizzle; TMA fills
// everything outside the tensor with zeros, so edges in m, n and k need no code here; stores are
// guarded by m and n.
//
// Block: 3 warpgroups (384 threads). Warpgroup 0 is the producer: one thread waits for a free stage
// (empty mbarrier), announces the stage's bytes (arrive.expect_tx on the full mbarrier) and issues the
// two TMA loads. Warpgroups 1 and 2 are consumers: rows 0-63 and 64-127 of the 128 x BN block tile;
// each waits on the full mbarrier, issues 4 wgmma (m64nBNk16 bf16 / m64nBNk8 tf32; one k-tile is 128
// bytes of k: 64 bf16 or 32 f32), commits, waits until at most this k-tile's group is in flight, and
// then frees the previous stage (one arrive per warp: empty count 8).
//
// Shared-memory descriptors (64 bits): start address >> 4 (bits 0-13), leading byte offset >> 4
// (16-29; unused for swizzled K-major, 1), stride byte offset >> 4 (32-45; 1024 bytes = 8 rows of
// 128 bytes, the swizzle atom), layout 1 = 128-byte swizzle (bits 62-63). TMA writes the 16-byte
// chunk c of row r at chunk c ^ (r % 8), exactly the atom wgmma reads; a k-step inside the 128-byte
// row advances the start address by 32 bytes (16 bf16 / 8 tf32).
//
// TF32: wgmma reads the upper 19 bits of each f32 (truncation); the pack kernels below round the
// operands to nearest (cvt.rna.tf32) while they lay them out, so the error matches the mma.sync path.

#define WG_THREADS 384

struct __align__(64) TmaDesc {
    unsigned long long v[16];
};

static __device__ __forceinline__ unsigned wg_smem_u32(const void* p) {
    unsigned r;
    asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define DINONAT_WGMMA 1

static __device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
static __device__ __forceinline__ void mbar_expect_tx(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
static __device__ __forceinline__ void mbar_arrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
static __device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
    unsigned done = 0;
    while (!done) {
        asm volatile(
            "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    }
}
static __device__ __forceinline__ void tma_load_3d(unsigned dst, const TmaDesc* map, unsigned bar, int c0, int c1,
                                                   int c2) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
        "[%2];\n" ::"r"(dst),
        "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
        : "memory");
}
static __device__ __forceinline__ unsigned long long smem_desc(unsigned addr) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) |
           (1ull << 62);
}
static __device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
static __device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
static __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keep the accumulators in place across the asynchronous wgmma (no reordering of their uses).
template <int R>
static __device__ __forceinline__ void fence_acc(float (&d)[R]) {
#pragma unroll
    for (int i = 0; i < R; i++) asm volatile("" : "+f"(d[i])::"memory");
}

// ---- wgmma instructions (generated: one register per accumulator, BN / 2 per thread)
template <int TRANS_B>
static __device__ __forceinline__ void wgmma_bf16_n128(float (&d)[64], unsigned long long da, unsigned long long db, int scale_d) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, p, 1, 1, 0, %67;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(scale_d), "n"(TRANS_B));
}

template <int TRANS_B>
static __device__ __forceinline__ void wgmma_bf16_n256(float (&d)[128], unsigned long long da, unsigned long long db, int scale_d) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
        "}, %128, %129, p, 1, 1, 0, %131;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
          "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
          "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
          "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(scale_d), "n"(TRANS_B));
}

static __device__ __forceinline__ void wgmma_tf32_n128(float (&d)[64], unsigned long long da, unsigned long long db, int scale_d) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(scale_d));
}

static __device__ __forceinline__ void wgmma_tf32_n256(float (&d)[128], unsigned long long da, unsigned long long db, int scale_d) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
        "}, %128, %129, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
          "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
          "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
          "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(scale_d));
}

template <bool TF32, int BN, bool B_MN>
static __device__ __forceinline__ void wgmma_mma(float (&d)[BN / 2], unsigned long long da, unsigned long long db) {
    if constexpr (TF32) {
        if constexpr (BN == 256)
            wgmma_tf32_n256(d, da, db, 1);
        else
            wgmma_tf32_n128(d, da, db, 1);
    } else {
        if constexpr (BN == 256)
            wgmma_bf16_n256<B_MN ? 1 : 0>(d, da, db, 1);
        else
            wgmma_bf16_n128<B_MN ? 1 : 0>(d, da, db, 1);
    }
}

// N-major B (bf16 only, imm-trans-b = 1): the B stage is BN / 64 TMA boxes of 64 n (128 bytes) x 64 k,
// 8 KB apart; in each, k-row r holds 64 consecutive n. Descriptor: leading byte offset = 8192 (from
// one 64-wide n chunk to the next), stride byte offset = 1024 (from 8 k-rows to the next 8), 128-byte
// swizzle; a k16 step advances the start by 16 rows = 2048 bytes.
static __device__ __forceinline__ unsigned long long smem_desc_mn(unsigned addr) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)(8192 >> 4) << 16) |
           ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
}

template <bool TF32, int BN, int STAGES, bool B_MN>
static __device__ __forceinline__ void wgmma_body(const TmaDesc* map_a, const TmaDesc* map_b, int m, int n, int k,
                                                  float alpha, float beta, float* __restrict__ c, long long ldc,
                                                  long long c_batch) {
    constexpr int BM = 128;
    constexpr int A_BYTES = BM * 128, B_BYTES = BN * 128, STAGE_BYTES = A_BYTES + B_BYTES;
    constexpr int BK = TF32 ? 32 : 64;  // elements of k per 128-byte row
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const unsigned base = (wg_smem_u32(smem_raw) + 1023u) & ~1023u;
    const unsigned bars = base + STAGES * STAGE_BYTES;  // full[s] at bars + 8 s, empty[s] at bars + 8 (STAGES + s)

    const int tid = threadIdx.x, wg = tid / 128;
    const int ktiles = (k + BK - 1) / BK;
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN, z = blockIdx.z;
    if (tid == 0) {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(bars + 8 * s, 1);
            mbar_init(bars + 8 * (STAGES + s), 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        if (tid == 0) {
            for (int kt = 0; kt < ktiles; kt++) {
                const int s = kt % STAGES;
                if (kt >= STAGES) mbar_wait(bars + 8 * (STAGES + s), ((kt / STAGES) - 1) & 1);
                const unsigned full = bars + 8 * s;
                mbar_expect_tx(full, STAGE_BYTES);
                tma_load_3d(base + s * STAGE_BYTES, map_a, full, kt * BK, bm, z);
                if constexpr (B_MN) {
#pragma unroll
                    for (int j = 0; j < BN / 64; j++)
                        tma_load_3d(base + s * STAGE_BYTES + A_BYTES + j * 8192, map_b, full, bn + 64 * j, kt * BK, z);
                } else {
                    tma_load_3d(base + s * STAGE_BYTES + A_BYTES, map_b, full, kt * BK, bn, z);
                }
            }
        }
        return;
    }

    const int cw = wg - 1;  // consumer: rows 64 cw .. 64 cw + 63 of the block tile
    const int lane = tid % 32, warp = (tid % 128) / 32;
    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; i++) acc[i] = 0.0f;

    for (int kt = 0; kt < ktiles; kt++) {
        const int s = kt % STAGES;
        mbar_wait(bars + 8 * s, (kt / STAGES) & 1);
        __syncwarp();
        const unsigned a0 = base + s * STAGE_BYTES + cw * 64 * 128;
        const unsigned b0 = base + s * STAGE_BYTES + A_BYTES;
        fence_acc(acc);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            const unsigned long long db = B_MN ? smem_desc_mn(b0 + 2048 * kk) : smem_desc(b0 + 32 * kk);
            wgmma_mma<TF32, BN, B_MN>(acc, smem_desc(a0 + 32 * kk), db);
        }
        wgmma_commit();
        wgmma_wait<1>();  // the previous k-tile's wgmma are done: free its stage
        fence_acc(acc);
        if (kt > 0 && lane == 0) mbar_arrive(bars + 8 * (STAGES + (kt - 1) % STAGES));
    }
    wgmma_wait<0>();
    fence_acc(acc);

    // Accumulator fragment (PTX ISA, wgmma D for m64nN): register 4 j + e of lane l in warp w holds
    // row 16 w + l / 4 + 8 (e / 2), column 8 j + 2 (l % 4) + e % 2.
    c += (long long)z * c_batch;
    const int row0 = bm + cw * 64 + warp * 16 + lane / 4;
    const bool pair = (ldc % 2 == 0) && ((reinterpret_cast<unsigned long long>(c) & 7) == 0);
#pragma unroll
    for (int j = 0; j < BN / 8; j++) {
        const int col = bn + 8 * j + 2 * (lane % 4);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int row = row0 + 8 * h;
            if (row >= m) continue;
            float v0 = alpha * acc[4 * j + 2 * h], v1 = alpha * acc[4 * j + 2 * h + 1];
            float* p = c + row * ldc + col;
            if (pair && col + 1 < n) {
                if (beta != 0.0f) {
                    float2 old = *reinterpret_cast<float2*>(p);
                    v0 = fmaf(beta, old.x, v0);
                    v1 = fmaf(beta, old.y, v1);
                }
                *reinterpret_cast<float2*>(p) = make_float2(v0, v1);
            } else {
                if (col < n) p[0] = (beta != 0.0f) ? fmaf(beta, p[0], v0) : v0;
                if (col + 1 < n) p[1] = (beta != 0.0f) ? fmaf(beta, p[1], v1) : v1;
            }
        }
    }
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// Kernels: gemm_<tf32|bf16>_wgmma_128x<BN>. Dynamic shared memory (set by the Rust side):
// STAGES * (128 + BN) * 128 bytes + 1024 (alignment slack) + 16 * STAGES (mbarriers):
//   128x256, 4 stages: 4 * 49152 + 1024 + 64 = 197696;  128x128, 6 stages: 6 * 32768 + 1024 + 96 = 197728.
// Compiled for anything but sm_90a, the kernels only trap (the Rust side never launches them there).
#define WG_PARAMS                                                                                         \
    const __grid_constant__ TmaDesc map_a, const __grid_constant__ TmaDesc map_b, int m, int n, int k,    \
        float alpha, float beta, float *__restrict__ c, long long ldc, long long c_batch
#ifdef DINONAT_WGMMA
#define WG_BODY(TF, BN, ST, BMN) wgmma_body<TF, BN, ST, BMN>(&map_a, &map_b, m, n, k, alpha, beta, c, ldc, c_batch)
#else
#define WG_BODY(TF, BN, ST, BMN) __trap()
#endif

// gemm_bf16n_*: B read N-major (row-major k x n in global memory, map_b over (n, k, batch)).
extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) gemm_tf32_wgmma_128x256(WG_PARAMS) { WG_BODY(true, 256, 4, false); }
extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) gemm_tf32_wgmma_128x128(WG_PARAMS) { WG_BODY(true, 128, 6, false); }
extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) gemm_bf16_wgmma_128x256(WG_PARAMS) { WG_BODY(false, 256, 4, false); }
extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) gemm_bf16_wgmma_128x128(WG_PARAMS) { WG_BODY(false, 128, 6, false); }
extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) gemm_bf16n_wgmma_128x256(WG_PARAMS) { WG_BODY(false, 256, 4, true); }
extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) gemm_bf16n_wgmma_128x128(WG_PARAMS) { WG_BODY(false, 128, 6, true); }

// ---------------------------------------------------------------- operand layout
// dst[z] (rows x cols_pad, row-major, pitch cols_pad) = src[z] (rows x cols, element (i, j) at
// i * rs + j * cs), zero in the padding columns; converted to D (f32 rounded to TF32, or bf16, or a
// bf16 copy). A 32 x 32 tile goes through shared memory so that both the reads (along whichever of
// i, j has unit stride: `i_fast`) and the writes (along j) are coalesced; this is also the
// transpose that turns a row-major B (k x n) into the K-major B^T (n x k) wgmma reads.
// MODE 0: f32 -> f32 rounded to TF32 (cvt.rna); 1: f32 -> bf16 (round to nearest even); 2: bf16 -> bf16.
template <typename S, typename D, int MODE>
static __device__ __forceinline__ void wg_pack_body(const S* __restrict__ src, long long rs, long long cs,
                                                    long long src_batch, int rows, int cols, int i_fast,
                                                    D* __restrict__ dst, int cols_pad, long long dst_batch) {
    __shared__ S tile[32][33];
    src += blockIdx.z * src_batch;
    dst += blockIdx.z * dst_batch;
    const int i0 = blockIdx.y * 32, j0 = blockIdx.x * 32;
    const int tx = threadIdx.x, ty = threadIdx.y;  // 32 x 8
#pragma unroll
    for (int r = 0; r < 32; r += 8) {
        // tile[a][b] holds element (i0 + a, j0 + b)
        int a = i_fast ? tx : ty + r, b = i_fast ? ty + r : tx;
        int i = i0 + a, j = j0 + b;
        S v;
        if (i < rows && j < cols)
            v = src[i * rs + j * cs];
        else
            v = S(0);
        tile[a][b] = v;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < 32; r += 8) {
        int i = i0 + ty + r, j = j0 + tx;
        if (i < rows && j < cols_pad) {
            S v = tile[ty + r][tx];
            D out;
            if constexpr (MODE == 0) {
                unsigned bits;
                asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(bits) : "f"(v));
                out = __uint_as_float(bits);
            } else if constexpr (MODE == 1) {
                unsigned short h;
                asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
                out = h;
            } else {
                out = v;
            }
            dst[i * (long long)cols_pad + j] = out;
        }
    }
}

#define PACK_PARAMS(S, D)                                                                                     \
    const S *__restrict__ src, long long rs, long long cs, long long src_batch, int rows, int cols, int i_fast, \
        D *__restrict__ dst, int cols_pad, long long dst_batch
#define PACK_ARGS src, rs, cs, src_batch, rows, cols, i_fast, dst, cols_pad, dst_batch
extern "C" __global__ void wg_pack_tf32(PACK_PARAMS(float, float)) {
    wg_pack_body<float, float, 0>(PACK_ARGS);
}
extern "C" __global__ void wg_pack_bf16(PACK_PARAMS(float, unsigned short)) {
    wg_pack_body<float, unsigned short, 1>(PACK_ARGS);
}
extern "C" __global__ void wg_pack_bf16_copy(PACK_PARAMS(unsigned short, unsigned short)) {
    wg_pack_body<unsigned short, unsigned short, 2>(PACK_ARGS);
}
