// Reductions and layout kernels on f32 (DinoNAT, docs/gpu-ops.md). Deterministic: every sum has a
// fixed order that does not depend on scheduling (block trees of fixed shape, fixed row chunks
// combined in chunk order), so reruns are bitwise identical.
//
// - sum_last_f32: y[r] = sum_j x[r, j], one block per row (strided partials, then a fixed tree).
// - sum_rows_partial_f32 + sum_chunks_f32: y[j] = sum_r x[r, j]; pass 1 sums fixed chunks of
//   `chunk_rows` rows per column, pass 2 adds the chunk partials in chunk order.
// - strided_copy_f32: dst[i] = src[offset + sum_k idx_k(i) * strides[k]] (contiguous() of a view).
// - binary_strided_f32: out[i] = a[..] op b[..] with both operands as strided (broadcast) views.
// - map_f32: out[i] = f(x[i]) for the engine's unary ops.

#define MAX_RANK 8

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ float block_sum(float v, float* sh) {
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = lane < warps ? sh[lane] : 0.0f;
    return warp_sum(v);
}

extern "C" __global__ void sum_last_f32(const float* __restrict__ x, float* __restrict__ y,
                                        int rows, int cols) {
    __shared__ float sh[32];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (long long)r * cols;
        float s = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
        s = block_sum(s, sh);
        if (threadIdx.x == 0) y[r] = s;
    }
}

extern "C" __global__ void sum_rows_partial_f32(const float* __restrict__ x,
                                                float* __restrict__ partial, int rows, int cols,
                                                int chunk_rows) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const int chunk = blockIdx.y;
    if (col >= cols) return;
    const int r0 = chunk * chunk_rows;
    const int r1 = min(rows, r0 + chunk_rows);
    float s = 0.0f;
    for (int r = r0; r < r1; ++r) s += x[(long long)r * cols + col];
    partial[(long long)chunk * cols + col] = s;
}

extern "C" __global__ void sum_chunks_f32(const float* __restrict__ partial, float* __restrict__ y,
                                          int chunks, int cols) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    float s = 0.0f;
    for (int c = 0; c < chunks; ++c) s += partial[(long long)c * cols + col];
    y[col] = s;
}

// Storage index of row-major element i of a strided view.
__device__ __forceinline__ long long strided_index(long long i, int rank, const long long* shape,
                                                   const long long* strides, long long offset) {
    long long o = offset;
    for (int k = rank - 1; k >= 0; --k) {
        const long long n = shape[k];
        o += (i % n) * strides[k];
        i /= n;
    }
    return o;
}

extern "C" __global__ void strided_copy_f32(const float* __restrict__ src, float* __restrict__ dst,
                                            long long n, int rank,
                                            const long long* __restrict__ shape,
                                            const long long* __restrict__ strides,
                                            long long offset) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        dst[i] = src[strided_index(i, rank, shape, strides, offset)];
    }
}

// op: 0 add, 1 sub, 2 mul, 3 div.
extern "C" __global__ void binary_strided_f32(int op, const float* __restrict__ a,
                                              const long long* __restrict__ a_strides,
                                              long long a_offset, const float* __restrict__ b,
                                              const long long* __restrict__ b_strides,
                                              long long b_offset, float* __restrict__ out,
                                              long long n, int rank,
                                              const long long* __restrict__ shape) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float x = a[strided_index(i, rank, shape, a_strides, a_offset)];
        const float y = b[strided_index(i, rank, shape, b_strides, b_offset)];
        float r;
        switch (op) {
            case 0: r = x + y; break;
            case 1: r = x - y; break;
            case 2: r = x * y; break;
            default: r = x / y; break;
        }
        out[i] = r;
    }
}

// dst[offset + sum_k idx_k(i) * strides[k]] = src[i] (the adjoint of a non-overlapping view).
extern "C" __global__ void strided_scatter_f32(const float* __restrict__ src, float* __restrict__ dst,
                                               long long n, int rank,
                                               const long long* __restrict__ shape,
                                               const long long* __restrict__ strides,
                                               long long offset) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        dst[strided_index(i, rank, shape, strides, offset)] = src[i];
    }
}

// op: 0 affine (p0 * x + p1), 1 exp, 2 log, 3 sqrt, 4 pow(x, p0), 5 max(x, p0),
// 6 step (x > p0 ? 1 : 0).
extern "C" __global__ void map_f32(int op, const float* __restrict__ x, float* __restrict__ y,
                                   long long n, float p0, float p1) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float v = x[i];
        float r;
        switch (op) {
            case 0: r = p0 * v + p1; break;
            case 1: r = expf(v); break;
            case 2: r = logf(v); break;
            case 3: r = sqrtf(v); break;
            case 4: r = powf(v, p0); break;
            case 5: r = fmaxf(v, p0); break;
            default: r = v > p0 ? 1.0f : 0.0f; break;
        }
        y[i] = r;
    }
}
