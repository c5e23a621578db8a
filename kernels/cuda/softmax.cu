// Softmax and log-softmax over the last axis, forward and backward, f32 (docs/gpu-ops.md).
// One block of 256 threads per row (grid-stride over rows); the row's max and sums are block
// reductions of fixed shape (deterministic). log_mode = 0: softmax, 1: log-softmax.
//   forward:  y = exp(x - m) / sum exp(x - m)           | y = x - (m + log sum exp(x - m))
//   backward: dx = y * (dy - sum(dy * y))                 | dx = dy - exp(y) * sum(dy)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ float block_sum(float v, float* sh) {
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0f;
    return warp_sum(v);
}
__device__ float block_max(float v, float* sh) {
    v = warp_max(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? sh[lane] : __int_as_float(0xff800000);
    return warp_max(v);
}

extern "C" __global__ void softmax_forward_f32(const float* __restrict__ x, float* __restrict__ y,
                                               int rows, int cols, int log_mode) {
    __shared__ float sh[32];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (long long)r * cols;
        float* yr = y + (long long)r * cols;
        float m = __int_as_float(0xff800000);
        for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, xr[j]);
        m = block_max(m, sh);
        float s = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(xr[j] - m);
        s = block_sum(s, sh);
        if (log_mode) {
            const float lse = m + logf(s);
            for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = xr[j] - lse;
        } else {
            for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = expf(xr[j] - m) / s;
        }
    }
}

extern "C" __global__ void softmax_backward_f32(const float* __restrict__ y,
                                                const float* __restrict__ dy,
                                                float* __restrict__ dx, int rows, int cols,
                                                int log_mode) {
    __shared__ float sh[32];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long base = (long long)r * cols;
        float s = 0.0f;
        if (log_mode) {
            for (int j = threadIdx.x; j < cols; j += blockDim.x) s += dy[base + j];
        } else {
            for (int j = threadIdx.x; j < cols; j += blockDim.x) s += dy[base + j] * y[base + j];
        }
        s = block_sum(s, sh);
        if (log_mode) {
            for (int j = threadIdx.x; j < cols; j += blockDim.x)
                dx[base + j] = dy[base + j] - expf(y[base + j]) * s;
        } else {
            for (int j = threadIdx.x; j < cols; j += blockDim.x)
                dx[base + j] = y[base + j] * (dy[base + j] - s);
        }
    }
}
