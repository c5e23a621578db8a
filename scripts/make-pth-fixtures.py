#!/usr/bin/env python3
"""Writes model/tests/fixtures/pth/: real torch.save checkpoints of a tiny random NAT in the three
naming schemes DinoNAT reads, the reference forward on a fixed input, and a file of strided and
shared tensor views, for model/tests/pth.rs and tests/cli_convert.rs (docs/pth.md).

The network is the plain-PyTorch NAT of ../shared/bench-ref/dino_step_torch.py with CONFIG below (3
levels of width 4, 8, 16; kernel 3: the window fits the 8x8 and 4x4 maps of a 32 px input, min(k, L)
on the 2x2 one) and the random weights of scripts/make-nat-fixture.py (imported from it). Files:
    official.pth          {"model": state_dict + a 10-class head, "epoch": 3}          (zip)
    official_legacy.pth   the same, _use_new_zipfile_serialization=False             (legacy)
    dino.pth              {"student": module.backbone.* (other values) + module.head.*,
                           "teacher": backbone.* + head.*, "optimizer": {...}, "epoch": 5,
                           "args": argparse.Namespace(...)}                          (zip)
    hf.pth                Hugging Face NatForImageClassification names (nat.*, query / key /
                          value split, classifier.*), as pytorch_model.bin            (zip)
    views.pth             {"base": [3, 5] f32, "t": base.t(), "narrow": base[1:, 2:], "same": base,
                           "half": f16, "bf16", "f64", "long"} (zip) and views_legacy.pth
    forward.safetensors   input [2, 3, 32, 32] F32, teacher_output / student_output [2, 16] F64:
                          the float64 forward on exactly the stored float32 weights.
With --nat-mini DIR it writes instead, for the ignored test of model/tests/pth.rs (78 MB, not
committed): DIR/nat_mini.pth (the reference NAT at nat_mini's config, random weights, as a bare state
dict like SHI-Labs' released files) and DIR/nat_mini_forward.safetensors (input [2, 3, 64, 64] F32,
output [2, 512] F64).
Usage: python3 scripts/make-pth-fixtures.py [--ref PATH/dino_step_torch.py] [--out DIR | --nat-mini DIR]
"""
import argparse, importlib.util, json, os, sys
from argparse import Namespace

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = dict(dim=4, depths=(1, 1, 1), heads=(1, 1, 2), ks=3, r=2.0, cin=3)
FEATURES = 16


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def hf_names(state, torch):
    """The reference names -> Hugging Face NatModel names (qkv split into query / key / value)."""
    out = {}
    for n, t in state.items():
        if n.startswith("patch_embed.proj."):
            out["nat.embeddings.patch_embeddings.projection." + n[len("patch_embed.proj."):]] = t
        elif n.startswith("patch_embed.norm."):
            out["nat.embeddings.norm." + n[len("patch_embed.norm."):]] = t
        elif n.startswith("norm."):
            out["nat.layernorm." + n[len("norm."):]] = t
        elif n.startswith("head."):
            out["classifier." + n[len("head."):]] = t
        elif ".downsample." in n:
            out["nat.encoder." + n] = t
        else:
            _, i, _, j, rest = n.split(".", 4)
            base = f"nat.encoder.levels.{i}.layers.{j}."
            if rest.startswith("attn.qkv."):
                kind = rest.split(".")[-1]
                for part, chunk in zip(("query", "key", "value"), t.chunk(3, 0)):
                    out[f"{base}attention.self.{part}.{kind}"] = chunk.clone()
            else:
                table = {"norm1.": "layernorm_before.", "norm2.": "layernorm_after.", "attn.rpb": "attention.self.rpb",
                         "attn.proj.": "attention.output.dense.", "mlp.fc1.": "intermediate.dense.",
                         "mlp.fc2.": "output.dense."}
                key = next(k for k in table if rest.startswith(k))
                out[base + table[key] + rest[len(key):]] = t
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default=None, help="path of dino_step_torch.py")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "model", "tests", "fixtures", "pth"))
    ap.add_argument("--nat-mini", default=None, metavar="DIR")
    args = ap.parse_args()
    fixture = load(os.path.join(HERE, "make-nat-fixture.py"), "make_nat_fixture")
    ref = args.ref or next((c for c in [os.path.join(HERE, *[".."] * n, "shared", "bench-ref", "dino_step_torch.py")
                                          for n in (2, 3)] if os.path.exists(c)), None)
    if ref is None:
        sys.exit("dino_step_torch.py not found: pass --ref")
    import torch

    if args.nat_mini:
        return nat_mini(fixture, load(ref, "dino_step_torch"), args.nat_mini, torch)
    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)
    gen = torch.Generator().manual_seed(fixture.SEED + 1)
    mod = fixture.load_reference(ref)
    teacher = mod.NAT(**CONFIG).double().eval()
    student = mod.NAT(**CONFIG).double().eval()
    fixture.randomize(teacher, torch, gen)
    fixture.randomize(student, torch, gen)
    t_state = {n: p.detach().float() for n, p in teacher.state_dict().items()}
    s_state = {n: p.detach().float() for n, p in student.state_dict().items()}
    head = {"head.weight": torch.randn(10, FEATURES, generator=gen), "head.bias": torch.randn(10, generator=gen)}

    official = {"model": dict(t_state, **head), "epoch": 3}
    torch.save(official, out("official.pth"))
    torch.save(official, out("official_legacy.pth"), _use_new_zipfile_serialization=False)
    dino_head = {"head.mlp.0.weight": torch.randn(8, FEATURES, generator=gen), "head.last_layer.weight_g": torch.ones(32, 1)}
    dino = {
        "student": {**{f"module.backbone.{n}": t for n, t in s_state.items()},
                    **{f"module.{n}": t for n, t in dino_head.items()}},
        "teacher": {**{f"backbone.{n}": t for n, t in t_state.items()}, **dino_head},
        "optimizer": {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(4)}},
                      "param_groups": [{"lr": 0.1, "params": [0]}]},
        "epoch": 5,
        "args": Namespace(arch="nat_tiny_fixture", lr=0.0005, out_dim=32),
    }
    torch.save(dino, out("dino.pth"))
    torch.save(hf_names(dict(t_state, **head), torch), out("hf.pth"))

    base = torch.randn(3, 5, generator=gen)
    views = {"base": base, "t": base.t(), "narrow": base[1:, 2:], "same": base, "half": base.half(),
             "bf16": base.bfloat16(), "f64": base.double(), "long": torch.arange(6)}
    torch.save(views, out("views.pth"))
    torch.save(views, out("views_legacy.pth"), _use_new_zipfile_serialization=False)

    x = torch.randn(2, 3, 32, 32, generator=gen, dtype=torch.float64).float()
    with torch.no_grad():
        for net, state in ((teacher, t_state), (student, s_state)):
            net.load_state_dict({n: t.double() for n, t in state.items()})
        y_t, y_s = teacher(x.double()), student(x.double())
    fixture.write_safetensors(out("forward.safetensors"), [
        ("input", "F32", tuple(x.shape), fixture.flat(x)),
        ("teacher_output", "F64", tuple(y_t.shape), fixture.flat(y_t)),
        ("student_output", "F64", tuple(y_s.shape), fixture.flat(y_s)),
    ], {"format": "dinonat-pth-fixture", "config": json.dumps(CONFIG), "torch": torch.__version__})
    # the files load back in torch as saved
    back = torch.load(out("dino.pth"), weights_only=False)
    assert torch.equal(back["teacher"]["backbone.norm.weight"], t_state["norm.weight"])
    for f in sorted(os.listdir(args.out)):
        print(f"{f}: {os.path.getsize(out(f))} bytes")


def nat_mini(fixture, mod, out, torch):
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(fixture.SEED + 2)
    net = mod.NAT().double().eval()  # the reference's defaults are nat_mini's config
    fixture.randomize(net, torch, gen)
    torch.save({n: p.detach().float() for n, p in net.state_dict().items()}, os.path.join(out, "nat_mini.pth"))
    x = torch.randn(2, 3, 64, 64, generator=gen, dtype=torch.float64).float()
    with torch.no_grad():
        y = net(x.double())
    fixture.write_safetensors(os.path.join(out, "nat_mini_forward.safetensors"), [
        ("input", "F32", tuple(x.shape), fixture.flat(x)), ("output", "F64", tuple(y.shape), fixture.flat(y))],
        {"format": "dinonat-pth-fixture", "torch": torch.__version__})
    print(f"wrote {out}/nat_mini.pth ({os.path.getsize(os.path.join(out, 'nat_mini.pth'))} bytes) and the forward")


if __name__ == "__main__":
    main()
