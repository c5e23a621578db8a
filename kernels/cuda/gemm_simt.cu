// Version 1 of the GPU GEMM: plain tiled shared-memory SGEMM on the SIMT (FP32 FMA) units.
// The reference every tensor-core GEMM is checked against on the device, and the path for any
// strided / transposed operand.
//
// C[z] = alpha * A[z] * B[z] + beta * C[z], A m x k, B k x n, C m x n, batch z = blockIdx.z.
// Element (i, j) of an operand lives at i * rs + j * cs (row and column strides in elements), so
// a transposed operand is just swapped strides. beta == 0: C is not read (NaN in C never leaks).
//
// Block tile 128 x 128, k-step 8, 256 threads; thread (tx, ty) owns the 8 x 8 outputs at rows
// ty + 16 i and columns tx + 16 j (interleaved so a warp reads 16 consecutive floats of the B
// tile and one broadcast word of the A tile: no shared-memory bank conflicts).

#define SIMT_BM 128
#define SIMT_BN 128
#define SIMT_BK 8

extern "C" __global__ void __launch_bounds__(256) gemm_simt_f32(
    int m, int n, int k, float alpha,
    const float* __restrict__ a, long long a_rs, long long a_cs, long long a_batch,
    const float* __restrict__ b, long long b_rs, long long b_cs, long long b_batch,
    float beta,
    float* __restrict__ c, long long c_rs, long long c_cs, long long c_batch) {
    __shared__ float as[SIMT_BK][SIMT_BM];
    __shared__ float bs[SIMT_BK][SIMT_BN];

    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int bm = blockIdx.y * SIMT_BM, bn = blockIdx.x * SIMT_BN;
    a += blockIdx.z * a_batch;
    b += blockIdx.z * b_batch;
    c += blockIdx.z * c_batch;

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < k; k0 += SIMT_BK) {
        // A tile 128 x 8: consecutive threads walk k first (coalesced for row-major A).
#pragma unroll
        for (int r = 0; r < 4; r++) {
            int e = tid + 256 * r;
            int kk = e % SIMT_BK, mm = e / SIMT_BK;
            int gi = bm + mm, gk = k0 + kk;
            as[kk][mm] = (gi < m && gk < k) ? a[gi * a_rs + gk * a_cs] : 0.0f;
        }
        // B tile 8 x 128: consecutive threads walk n first (coalesced for row-major B).
#pragma unroll
        for (int r = 0; r < 4; r++) {
            int e = tid + 256 * r;
            int nn = e % SIMT_BN, kk = e / SIMT_BN;
            int gk = k0 + kk, gj = bn + nn;
            bs[kk][nn] = (gk < k && gj < n) ? b[gk * b_rs + gj * b_cs] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SIMT_BK; kk++) {
            float av[8], bv[8];
#pragma unroll
            for (int i = 0; i < 8; i++) av[i] = as[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 8; j++) bv[j] = bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 8; i++) {
        int gi = bm + ty + 16 * i;
        if (gi >= m) continue;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int gj = bn + tx + 16 * j;
            if (gj >= n) continue;
            float* p = c + gi * c_rs + gj * c_cs;
            *p = (beta == 0.0f) ? alpha * acc[i][j] : fmaf(alpha, acc[i][j], beta * *p);
        }
    }
}
