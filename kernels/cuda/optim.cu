// Optimizer kernels, f32, fused (docs/gpu-ops.md). One launch per parameter tensor, so lr and
// weight decay are per tensor. bc1 = 1 - beta1^t, bc2 = 1 - beta2^t (bias corrections, computed
// on the host in f64).
//   AdamW (decoupled decay): p <- p * (1 - lr * wd); m <- b1 m + (1 - b1) g;
//                            v <- b2 v + (1 - b2) g^2; p <- p - lr * (m / bc1) / (sqrt(v / bc2) + eps)
//   EMA:                     teacher <- m * teacher + (1 - m) * student

extern "C" __global__ void adamw_step_f32(float* __restrict__ p, const float* __restrict__ g,
                                          float* __restrict__ m, float* __restrict__ v,
                                          long long n, float lr, float wd, float beta1,
                                          float beta2, float eps, float bc1, float bc2) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float gi = g[i];
        float pi = p[i] * (1.0f - lr * wd);
        const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        pi -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
    }
}

extern "C" __global__ void ema_update_f32(float* __restrict__ teacher,
                                          const float* __restrict__ student, long long n,
                                          float momentum) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        teacher[i] = momentum * teacher[i] + (1.0f - momentum) * student[i];
    }
}

// Per-tensor gradient clipping (DINO's clip_gradients, docs/optim.md) without a host round trip:
// out = g * min(1, max_norm / (norm + 1e-6)) with the tensor's norm ||g|| read from device memory.
extern "C" __global__ void clip_scale_f32(const float* __restrict__ g,
                                          const float* __restrict__ norm, float* __restrict__ out,
                                          long long n, float max_norm) {
    const float coef = fminf(1.0f, max_norm / (norm[0] + 1e-6f));
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = g[i] * coef;
    }
}
