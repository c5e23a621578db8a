#!/usr/bin/env python3
"""Same-run cuBLAS baseline for `dinonat bench gemm --device cuda`: torch.matmul on the same
shapes and precisions, timed the same way (CUDA events around batches of ~2 ms, after warm-up,
median of 15 samples). One JSON object per line: m, k, n, precision, ms, tflops.

fp32: torch.backends.cuda.matmul.allow_tf32 = False (true FP32 on the SIMT units)
tf32: allow_tf32 = True (f32 tensors, TF32 tensor cores)
bf16: bf16 tensors (output bf16; ours writes f32, a negligible difference at these sizes)

usage: gemm_torch.py [MxKxN ...]   (default 1024, 2048, 4096 cubes)
"""
import json
import sys

import torch


def time_ms(f):
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def sample(reps):
        start.record()
        for _ in range(reps):
            f()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / reps

    est = max(sample(1), 1e-4)
    reps = min(200, max(1, int(2.0 / est + 0.999)))
    samples = sorted(sample(reps) for _ in range(15))
    return samples[len(samples) // 2]


def main():
    shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[1:]] or [
        (1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096)]
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    for (m, k, n) in shapes:
        g = torch.Generator(device=dev).manual_seed(m + 7 * n)
        a = torch.rand(m, k, device=dev, generator=g) * 2 - 1
        b = torch.rand(k, n, device=dev, generator=g) * 2 - 1
        for prec in ("fp32", "tf32", "bf16"):
            torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
            if prec == "bf16":
                x, y = a.bfloat16(), b.bfloat16()
                out = torch.empty(m, n, device=dev, dtype=torch.bfloat16)
            else:
                x, y = a, b
                out = torch.empty(m, n, device=dev, dtype=torch.float32)
            ms = time_ms(lambda: torch.matmul(x, y, out=out))
            tflops = 2.0 * m * k * n / (ms * 1e-3) / 1e12
            print(json.dumps({"impl": "torch.matmul (cuBLAS)", "device": name, "m": m, "k": k, "n": n,
                              "precision": prec, "ms": round(ms, 5), "tflops": round(tflops, 2),
                              "torch": torch.__version__}), flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False


if __name__ == "__main__":
    main()
