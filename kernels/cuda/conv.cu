// im2col / col2im for 2-D convolution as a GEMM, f32, batched (docs/conv.md, docs/gpu-ops.md).
// image [N, C, H, W] <-> cols [N, C*kh*kw, out_h*out_w]; column p of image n holds the receptive
// field of output pixel p (zero on padding). Same layout as kernels/src/cpu/conv.rs.
// col2im gathers: one thread per image element sums its (ki, kj) terms in the reference's order,
// so no atomics and a deterministic result.

struct Geometry {
    int channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h,
        out_w;
};

extern "C" __global__ void im2col_f32(const float* __restrict__ image, float* __restrict__ cols,
                                      int batch, Geometry g) {
    const long long col_cols = (long long)g.out_h * g.out_w;
    const long long col_rows = (long long)g.channels * g.kernel_h * g.kernel_w;
    const long long n = (long long)batch * col_rows * col_cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const int ox = (int)(i % g.out_w);
        const int oy = (int)((i / g.out_w) % g.out_h);
        const long long row = (i / col_cols) % col_rows;
        const long long b = i / (col_cols * col_rows);
        const int kj = (int)(row % g.kernel_w);
        const int ki = (int)((row / g.kernel_w) % g.kernel_h);
        const int c = (int)(row / ((long long)g.kernel_w * g.kernel_h));
        const int y = oy * g.stride_h + ki - g.pad_h;
        const int x = ox * g.stride_w + kj - g.pad_w;
        float v = 0.0f;
        if (y >= 0 && x >= 0 && y < g.height && x < g.width)
            v = image[((b * g.channels + c) * g.height + y) * (long long)g.width + x];
        cols[i] = v;
    }
}

extern "C" __global__ void col2im_f32(const float* __restrict__ cols, float* __restrict__ image,
                                      int batch, Geometry g) {
    const long long col_cols = (long long)g.out_h * g.out_w;
    const long long col_rows = (long long)g.channels * g.kernel_h * g.kernel_w;
    const long long n = (long long)batch * g.channels * g.height * g.width;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const int x = (int)(i % g.width);
        const int y = (int)((i / g.width) % g.height);
        const int c = (int)((i / ((long long)g.width * g.height)) % g.channels);
        const long long b = i / ((long long)g.width * g.height * g.channels);
        const float* cb = cols + b * col_rows * col_cols;
        float s = 0.0f;
        for (int ki = 0; ki < g.kernel_h; ++ki) {
            const int ty = y + g.pad_h - ki;
            if (ty < 0 || ty % g.stride_h != 0) continue;
            const int oy = ty / g.stride_h;
            if (oy >= g.out_h) continue;
            for (int kj = 0; kj < g.kernel_w; ++kj) {
                const int tx = x + g.pad_w - kj;
                if (tx < 0 || tx % g.stride_w != 0) continue;
                const int ox = tx / g.stride_w;
                if (ox >= g.out_w) continue;
                const long long row = ((long long)c * g.kernel_h + ki) * g.kernel_w + kj;
                s += cb[row * col_cols + (long long)oy * g.out_w + ox];
            }
        }
        image[i] = s;
    }
}
