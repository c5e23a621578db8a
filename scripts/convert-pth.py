#!/usr/bin/env python3
"""Convert a PyTorch checkpoint of NAT into a safetensors file that DinoNAT loads.

Accepts:
  * an official NAT checkpoint (SHI-Labs classification: {"model": state_dict, ...} or a bare
    state_dict);
  * a DINO training checkpoint ({"student": ..., "teacher": ..., ...}, names under `backbone.` and
    `head.`, with `module.` when saved from distributed training): the teacher by default
    (--which student for the student).

Names are kept as they are apart from the prefixes `module.` and `backbone.`, which are removed,
so the output uses the weight names of docs/nat.md. `head.*` tensors (a classifier or the DINO
head) are kept unless --drop-head; DinoNAT's backbone loader ignores them with a note. Tensors are
written as float32; non-floating entries (counters, index buffers) are skipped and listed.

Needs only torch (numpy if present speeds up the write). Usage:
    python3 scripts/convert-pth.py nat_mini.pth nat_mini.safetensors
    python3 scripts/convert-pth.py dino_checkpoint.pth teacher.safetensors --which teacher
"""

import argparse
import json
import os
import struct
import sys
import tempfile

PREFIXES = ("module.", "backbone.")


def strip_prefixes(name):
    for p in PREFIXES:
        if name.startswith(p):
            name = name[len(p):]
    return name


def pick_state_dict(ckpt, which):
    """The state dict inside a checkpoint, and a description of where it came from."""
    if not isinstance(ckpt, dict):
        raise SystemExit(f"expected a dict checkpoint, got {type(ckpt).__name__}")
    if "teacher" in ckpt or "student" in ckpt:
        if which not in ckpt:
            raise SystemExit(f"DINO checkpoint has no '{which}' (keys: {sorted(ckpt)})")
        return ckpt[which], f"DINO checkpoint, {which}"
    for key in ("model", "state_dict", "model_ema"):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key], f"checkpoint['{key}']"
    return ckpt, "bare state dict"


def tensor_bytes(t):
    t = t.detach().to("cpu").float().contiguous()
    try:
        return t.numpy().astype("<f4", copy=False).tobytes()
    except Exception:  # torch built without numpy
        values = t.flatten().tolist()
        return struct.pack(f"<{len(values)}f", *values)


def write_safetensors(path, tensors, metadata):
    """safetensors: u64 little-endian header length, JSON header, then the data (8-byte aligned
    header as the reference writer pads it)."""
    header = {"__metadata__": metadata} if metadata else {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        data = tensor_bytes(t)
        header[name] = {
            "dtype": "F32",
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * ((8 - len(head) % 8) % 8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".convert-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="a .pth / .pt checkpoint")
    ap.add_argument("output", help="the .safetensors file to write")
    ap.add_argument("--which", default="teacher", choices=["teacher", "student"],
                    help="network of a DINO checkpoint (default: teacher)")
    ap.add_argument("--drop-head", action="store_true", help="leave out head.* tensors")
    ap.add_argument("--arch", default="", help="architecture name stored in the metadata (e.g. nat_mini)")
    args = ap.parse_args()

    import torch

    try:
        ckpt = torch.load(args.input, map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13 has no weights_only
        ckpt = torch.load(args.input, map_location="cpu")
    except Exception as e:
        print(f"note: weights_only load failed ({e}); retrying with a full unpickle "
              "(only do this for files you trust)", file=sys.stderr)
        ckpt = torch.load(args.input, map_location="cpu", weights_only=False)

    state, origin = pick_state_dict(ckpt, args.which)
    out, skipped, heads = {}, [], 0
    for name, value in state.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            skipped.append(name)
            continue
        new = strip_prefixes(name)
        if new.startswith("head."):
            if args.drop_head:
                continue
            heads += 1
        if new in out:
            raise SystemExit(f"two tensors map to '{new}' after removing prefixes {PREFIXES}")
        out[new] = value

    if not out:
        raise SystemExit(f"{args.input}: no floating-point tensors found ({origin})")
    metadata = {"format": "dinonat-nat", "source": os.path.basename(args.input), "origin": origin}
    if args.arch:
        metadata["arch"] = args.arch
    write_safetensors(args.output, out, metadata)
    n = sum(t.numel() for t in out.values())
    print(f"{args.input} ({origin}) -> {args.output}: {len(out)} tensors, {n / 1e6:.2f} M values, "
          f"{heads} head tensor(s) kept")
    if skipped:
        print(f"skipped {len(skipped)} non-float entr(ies): {', '.join(skipped[:10])}"
              + (" ..." if len(skipped) > 10 else ""))


if __name__ == "__main__":
    main()
