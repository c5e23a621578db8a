// Elementwise kernels (f32): add, scale, axpy, GELU (erf form) forward and backward, f32 -> bf16.
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

// Round to nearest even (cvt.rn.bf16.f32, sm_80+).
extern "C" __global__ void f32_to_bf16(const float* x, unsigned short* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        unsigned short h;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x[i]));
        y[i] = h;
    }
}
