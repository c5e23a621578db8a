// Selections along one axis, f32 (DinoNAT, docs/gpu-ops.md). A tensor is viewed as
// x [outer, n, inner] around the axis; every kernel writes each output element exactly once
// (no zero fill, no atomics), so results are deterministic and a missed element shows in the
// tests (outputs poisoned with NaN).
//
// - max_axis_f32: y[o, i] = max_j x[o, j, i], at[o, i] = the first j of that max (the CPU's rule:
//   j replaces the best only when x > best, so NaN never wins and ties keep the first).
// - max_backward_f32: dx[o, j, i] = dy[o, i] where j == at[o, i], else 0.
// - index_select_f32: y[o, j, i] = x[o, idx[j], i].
// - index_select_backward_f32: dx[o, s, i] = sum over the j with idx[j] == s, in increasing j, of
//   dy[o, j, i]: the CPU's scatter-add order, read as a gather through the inverse index
//   (js[starts[s] .. starts[s + 1]] = those j, built on the host).

extern "C" __global__ void max_axis_f32(const float* __restrict__ x, float* __restrict__ y,
                                        int* __restrict__ at, long long outer, int n,
                                        long long inner) {
    const long long total = outer * inner;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const long long o = t / inner, i = t % inner;
        const float* xo = x + o * n * inner + i;
        float best = xo[0];
        int where = 0;
        for (int j = 1; j < n; ++j) {
            const float v = xo[(long long)j * inner];
            if (v > best) {
                best = v;
                where = j;
            }
        }
        y[t] = best;
        at[t] = where;
    }
}

extern "C" __global__ void max_backward_f32(const float* __restrict__ dy,
                                            const int* __restrict__ at, float* __restrict__ dx,
                                            long long outer, int n, long long inner) {
    const long long total = outer * n * inner;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const long long i = t % inner;
        const long long j = (t / inner) % n;
        const long long o = t / (inner * n);
        const long long r = o * inner + i;
        dx[t] = at[r] == j ? dy[r] : 0.0f;
    }
}

extern "C" __global__ void index_select_f32(const float* __restrict__ x,
                                            const long long* __restrict__ idx,
                                            float* __restrict__ y, long long outer, int n, int m,
                                            long long inner) {
    const long long total = outer * m * inner;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const long long i = t % inner;
        const long long j = (t / inner) % m;
        const long long o = t / (inner * m);
        y[t] = x[(o * n + idx[j]) * inner + i];
    }
}

extern "C" __global__ void index_select_backward_f32(const float* __restrict__ dy,
                                                     const long long* __restrict__ starts,
                                                     const long long* __restrict__ js,
                                                     float* __restrict__ dx, long long outer,
                                                     int n, int m, long long inner) {
    const long long total = outer * n * inner;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const long long i = t % inner;
        const long long s = (t / inner) % n;
        const long long o = t / (inner * n);
        float acc = 0.0f;
        for (long long k = starts[s]; k < starts[s + 1]; ++k) acc += dy[(o * m + js[k]) * inner + i];
        dx[t] = acc;
    }
}
