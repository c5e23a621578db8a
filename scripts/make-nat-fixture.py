#!/usr/bin/env python3
"""Writes model/tests/fixtures/nat_tiny_fixture.safetensors: a tiny NAT with random weights under
the reference names (docs/nat.md), two input batches, and the PyTorch reference's outputs, for
model/tests/torch_reference.rs.

The network is the plain-PyTorch NAT of ../shared/bench-ref/dino_step_torch.py (min(k, L) window
rule). Every parameter gets non-trivial random values (LayerNorm weights away from 1, biases and
rpb away from 0). Weights and inputs are rounded to float32 and stored as F32; the forward runs in
float64 on CPU on exactly those rounded values, and its outputs are stored as F64.

Tensors besides the weights (shapes for the default config):
    input          [2, 3, 32, 32]  F32   output          [2, 64]  F64 (final LayerNorm + mean pool)
    input_40x24    [2, 3, 40, 24]  F32   output_40x24    [2, 64]  F64
    trace.{tag}.patch_embed        [B, h, w, C]  F64  (tokenizer output, channels-last)
    trace.{tag}.level{i}.blocks    [B, h, w, D]  F64  (after the blocks of level i, before its downsampler)
with tag = 32x32 or 40x24. The config is JSON under the metadata key "config".

Only torch is needed (the file is written by hand with struct + json).
Usage: python3 make-nat-fixture.py [--ref PATH/dino_step_torch.py] --out FILE
"""
import argparse, importlib.util, json, os, struct, sys

CONFIG = dict(dim=8, depths=(1, 1, 2, 1), heads=(1, 2, 2, 2), ks=5, r=2.0, cin=3)
INPUTS = [("32x32", "input", "output", (2, 3, 32, 32)), ("40x24", "input_40x24", "output_40x24", (2, 3, 40, 24))]
SEED = 20261127


def write_safetensors(path, entries, metadata):
    """entries: list of (name, dtype 'F32' | 'F64', shape, flat list of floats)."""
    fmt = {"F32": "<f", "F64": "<d"}
    header, blobs, offset = {}, [], 0
    for name, dtype, shape, values in entries:
        n = 1
        for s in shape:
            n *= s
        assert len(values) == n, f"{name}: {len(values)} values for shape {shape}"
        blob = struct.pack("<%d%s" % (n, fmt[dtype][1]), *values)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """The inverse of write_safetensors (used for the self-check)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        code = {"F32": "f", "F64": "d"}[h["dtype"]]
        raw = data[8 + n + a:8 + n + b]
        out[name] = (h["dtype"], h["shape"], list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(code), code), raw)))
    return out, meta


def load_reference(path):
    spec = importlib.util.spec_from_file_location("dino_step_torch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def randomize(model, torch, gen):
    """Non-trivial values for every parameter, rounded to float32."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("rpb"):
                v = 0.5 * z
            elif ("norm" in name) and name.endswith("weight"):
                v = 1.0 + 0.3 * z
            elif name.endswith("bias"):
                v = 0.2 * z
            else:  # linear / conv weights [out, in, ...]: scale 1/sqrt(fan_in) keeps activations O(1)
                fan_in = 1
                for s in p.shape[1:]:
                    fan_in *= s
                v = z / fan_in ** 0.5
            p.copy_(v.float().double())


def flat(t):
    return t.detach().contiguous().reshape(-1).tolist()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default=None, help="path of dino_step_torch.py")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ref = args.ref
    if ref is None:
        # beside the script (as copied to the GPU host), then ../shared beside the checkout
        # (checkout/scripts -> ../shared) or beside a worktree's parent
        cands = [os.path.join(here, "dino_step_torch.py")]
        cands += [os.path.join(here, *[".."] * n, "shared", "bench-ref", "dino_step_torch.py") for n in (2, 3)]
        for cand in cands:
            if os.path.exists(cand):
                ref = cand
                break
    if ref is None or not os.path.exists(ref):
        sys.exit("dino_step_torch.py not found: pass --ref")
    import torch

    mod = load_reference(ref)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = mod.NAT(**CONFIG).double().eval()
    randomize(model, torch, gen)
    entries = [(n, "F32", tuple(p.shape), flat(p.float())) for n, p in model.state_dict().items()]
    with torch.no_grad():
        for tag, in_name, out_name, shape in INPUTS:
            x = torch.randn(shape, generator=gen, dtype=torch.float64).float().double()
            y = model(x)
            entries.append((in_name, "F32", shape, flat(x.float())))
            entries.append((out_name, "F64", tuple(y.shape), flat(y)))
            t = model.patch_embed(x)
            entries.append((f"trace.{tag}.patch_embed", "F64", tuple(t.shape), flat(t)))
            for i, level in enumerate(model.levels):
                for b in level.blocks:
                    t = b(t)
                entries.append((f"trace.{tag}.level{i}.blocks", "F64", tuple(t.shape), flat(t)))
                if level.downsample is not None:
                    t = level.downsample(t)
            # the trace ends where forward() does
            pooled = model.norm(t).flatten(1, 2).mean(1)
            err = (pooled - y).abs().max().item()
            assert err == 0.0, f"trace disagrees with forward: {err}"
            print(f"{tag}: input {list(shape)} -> output {list(y.shape)}, level maps "
                  f"{[tuple(e[2][1:3]) for e in entries if e[0].startswith(f'trace.{tag}.level')]}")
    meta = {
        "format": "dinonat-nat-fixture",
        "config": json.dumps(dict(CONFIG, depths=list(CONFIG["depths"]), heads=list(CONFIG["heads"]),
                                  patch_stride=4, layer_norm_eps=1e-5, layer_scale=None, dilation=1)),
        "seed": SEED,
        "reference": "shared/bench-ref/dino_step_torch.py NAT (min(k, L) window), float64 on CPU",
        "dtypes": "weights and inputs F32 (the float64 forward used exactly these values); outputs and traces F64",
        "torch": torch.__version__,
    }
    write_safetensors(args.out, entries, meta)
    back, back_meta = read_safetensors(args.out)
    assert set(back) == {e[0] for e in entries} and back_meta["format"] == meta["format"]
    for name, dtype, shape, values in entries:
        assert back[name][2] == [float(v) for v in values], name
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {len(entries)} tensors, {n_params} parameters, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
