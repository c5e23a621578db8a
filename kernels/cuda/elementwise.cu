// Elementwise kernels (f32): add, scale, axpy, GELU (erf form) forward and backward, f32 <-> bf16.
// One thread per element, grid-stride loop. CPU references: kernels/src/cpu/{elementwise,gelu}.rs.
// Math of GELU: docs/gelu.md. No headers: NVRTC provides erff/expf; bf16 is stored as unsigned short.

extern "C" __global__ void add_f32(const float* x, const float* y, float* out, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = x[i] + y[i];
    }
}

extern "C" __global__ void scale_f32(float alpha, const float* x, float* out, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = alpha * x[i];
    }
}

// y = alpha * x + y
extern "C" __global__ void axpy_f32(float alpha, const float* x, float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        y[i] = fmaf(alpha, x[i], y[i]);
    }
}

// y = 0.5 x (1 + erf(x / sqrt 2))
extern "C" __global__ void gelu_forward_f32(const float* x, float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    }
}

// dx = dy * (Phi(x) + x phi(x))
extern "C" __global__ void gelu_backward_f32(const float* x, const float* dy, float* dx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

// f32 -> bf16, round to nearest even, NaN quieted: the integer rule of kernels/src/cpu/bf16.rs
// (`bf16_from_f32`), so the CPU and the GPU narrow bit for bit alike (cvt.rn.bf16.f32 would give
// the canonical NaN instead of the quieted payload).
extern "C" __global__ void f32_to_bf16(const float* x, unsigned short* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        unsigned int b = __float_as_uint(x[i]);
        unsigned int rounded = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
        unsigned int nan = (b >> 16) | 0x0040u;
        y[i] = (unsigned short)((b & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
    }
}

// bf16 -> f32, exact; NaN quieted (`f32_from_bf16` of kernels/src/cpu/bf16.rs).
extern "C" __global__ void bf16_to_f32(const unsigned short* x, float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        unsigned int b = x[i];
        unsigned int quiet = (b & 0x7FFFu) > 0x7F80u ? 0x0040u : 0u;
        y[i] = __uint_as_float((b | quiet) << 16);
    }
}
