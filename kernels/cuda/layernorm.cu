// LayerNorm over the last axis, f32 (docs/layernorm.md, docs/gpu-ops.md).
//   forward:  mean, var = mean((x - mean)^2) (two passes), rstd = 1 / sqrt(var + eps),
//             y = (x - mean) * rstd * gamma + beta; saves mean[r], rstd[r].
//   backward: g = dy * gamma, xhat = (x - mean) * rstd,
//             dx = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat))        (one block per row)
//             dgamma = sum_r dy * xhat, dbeta = sum_r dy: fixed chunks of rows per column
//             (pass 1), chunk partials added in chunk order (pass 2): deterministic.

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
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

extern "C" __global__ void layernorm_forward_f32(const float* __restrict__ x,
                                                 const float* __restrict__ gamma,
                                                 const float* __restrict__ beta,
                                                 float* __restrict__ y, float* __restrict__ mean,
                                                 float* __restrict__ rstd, int rows, int cols,
                                                 float eps) {
    __shared__ float sh[32];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (long long)r * cols;
        float* yr = y + (long long)r * cols;
        float s = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
        const float mu = block_sum(s, sh) / (float)cols;
        float q = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const float d = xr[j] - mu;
            q += d * d;
        }
        const float var = block_sum(q, sh) / (float)cols;
        const float rs = 1.0f / sqrtf(var + eps);
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
        if (threadIdx.x == 0) {
            mean[r] = mu;
            rstd[r] = rs;
        }
    }
}

extern "C" __global__ void layernorm_backward_dx_f32(const float* __restrict__ x,
                                                     const float* __restrict__ gamma,
                                                     const float* __restrict__ mean,
                                                     const float* __restrict__ rstd,
                                                     const float* __restrict__ dy,
                                                     float* __restrict__ dx, int rows, int cols) {
    __shared__ float sh[32];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long base = (long long)r * cols;
        const float mu = mean[r], rs = rstd[r];
        float sg = 0.0f, sgx = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const float g = dy[base + j] * gamma[j];
            sg += g;
            sgx += g * (x[base + j] - mu) * rs;
        }
        const float mean_g = block_sum(sg, sh) / (float)cols;
        const float mean_gx = block_sum(sgx, sh) / (float)cols;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const float xhat = (x[base + j] - mu) * rs;
            dx[base + j] = rs * (dy[base + j] * gamma[j] - mean_g - xhat * mean_gx);
        }
    }
}

extern "C" __global__ void layernorm_backward_params_partial_f32(
    const float* __restrict__ x, const float* __restrict__ mean, const float* __restrict__ rstd,
    const float* __restrict__ dy, float* __restrict__ partial_gamma,
    float* __restrict__ partial_beta, int rows, int cols, int chunk_rows) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const int chunk = blockIdx.y;
    if (col >= cols) return;
    const int r0 = chunk * chunk_rows;
    const int r1 = min(rows, r0 + chunk_rows);
    float sg = 0.0f, sb = 0.0f;
    for (int r = r0; r < r1; ++r) {
        const long long i = (long long)r * cols + col;
        sg += dy[i] * ((x[i] - mean[r]) * rstd[r]);
        sb += dy[i];
    }
    partial_gamma[(long long)chunk * cols + col] = sg;
    partial_beta[(long long)chunk * cols + col] = sb;
}

extern "C" __global__ void layernorm_backward_params_final_f32(
    const float* __restrict__ partial_gamma, const float* __restrict__ partial_beta,
    float* __restrict__ dgamma, float* __restrict__ dbeta, int chunks, int cols) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    float sg = 0.0f, sb = 0.0f;
    for (int c = 0; c < chunks; ++c) {
        sg += partial_gamma[(long long)c * cols + col];
        sb += partial_beta[(long long)c * cols + col];
    }
    dgamma[col] = sg;
    dbeta[col] = sb;
}
