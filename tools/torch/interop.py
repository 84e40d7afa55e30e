#!/usr/bin/python3
"""interop.py - PyTorch's half of the parity tests with diffusion.h (make test-interop; tests/interop.c is the C half).

  python3 tools/torch/interop.py export --net mlp|unet --steps 200 --out DIR [--seed S]
      trains the PyTorch twin `steps` steps and writes DIR/model.safetensors
      (weights and EMA; linear T = 1000 schedule) and DIR/check.safetensors:
        x (N, dim) or (N, H, W, C)   inputs of varied scale (diffusion.h's NHWC layout)
        t (N)                        the library's t in 1..T, as floats
        labels (N)                   U-Net only: -1..C-1, as floats
        pred                         the twin's outputs on them (the weights, not the EMA)
        x_T (M, ...), ddim (M, ...)  starting noise and its DDIM-50 samples (trailing,
                                     eta 0; the U-Net with the first M labels)
      and the metadata {"steps": "50"}. MLP: N = M = 1000; U-Net: N = M = 16.
  python3 tools/torch/interop.py predict MODEL --out DIR
      the same check file for a model trained elsewhere (train.py, torchrun),
      with a copy of MODEL as DIR/model.safetensors
  python3 tools/torch/interop.py check DIR
      loads DIR/model.safetensors and DIR/check.safetensors written by
      diffusion.h, computes pred and ddim here from the same inputs and
      prints max |PyTorch - diffusion.h| and that over max |diffusion.h|;
      exit status 1 when pred's relative difference is above 1e-5 or ddim's
      above 1e-4 (or a file or tensor is missing).

Single-threaded float32 on the CPU, fixed seeds: the same numbers every run.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dfn_torch as dt          # noqa: E402

STEPS = 50                       # DDIM steps of the check
LIMIT_PRED, LIMIT_DDIM = 1e-5, 1e-4
SMALL_UNET = dict(height=8, width=8, channels=1, cond_channels=0, base_channels=8, levels=2, mult=[1, 2],
                  blocks=1, attention=[0, 1], mid_attention=1, groups=4, time_dim=32, num_classes=3,
                  prediction="eps")


def inputs(net, n, gen):
    """x of varied scale (0.1 .. 3.1 by rows), t spread over 1..T, labels -1..2:
    the inputs tests/interop.c uses (in distribution, not in bits)."""
    dims = (2,) if net == "mlp" else (8, 8, 1)
    scale = torch.tensor([0.1 + 3.0 * (i % 10) / 9.0 for i in range(n)]).view((n,) + (1,) * len(dims))
    x = scale * torch.randn((n,) + dims, generator=gen)
    t = torch.tensor([1 + (997 * i + 13) % 1000 for i in range(n)], dtype=torch.float32)
    labels = torch.tensor([i % 4 - 1 for i in range(n)]) if net == "unet" else None
    return x, t, labels


def write_check(model, sch, net, n, m, gen, out):
    """OUT/check.safetensors: inputs, the model's predictions and DDIM samples."""
    x, t, labels = inputs(net, n, gen)
    x_T = torch.randn((m,) + tuple(x.shape[1:]), generator=gen)
    with torch.no_grad():
        pred = dt.apply(model, x, t, labels)
        ddim = dt.ddim_sample(model, sch, x_T, STEPS, labels[:m] if labels is not None else None)
    check = {"x": x, "t": t, "pred": pred, "x_T": x_T, "ddim": ddim}
    if labels is not None:
        check["labels"] = labels.float()
    dt.save_safetensors(os.path.join(out, "check.safetensors"), check, {"steps": str(STEPS)})


def predict(a):
    """The check file of a model trained elsewhere (train.py, torchrun), beside a copy of it."""
    gen = torch.Generator().manual_seed(a.seed)
    model, ema, sch, meta = dt.load_model(a.model)
    model.eval()
    net = "unet" if isinstance(model, dt.UNet) else "mlp"
    if net == "unet" and (model.cfg["height"], model.cfg["width"], model.cfg["channels"]) != (8, 8, 1):
        print("interop.py predict: only 2D MLPs and 8x8 U-Nets (the check file's inputs)", file=sys.stderr)
        return 1
    n = m = 1000 if net == "mlp" else 16
    os.makedirs(a.out, exist_ok=True)
    with open(a.model, "rb") as f, open(os.path.join(a.out, "model.safetensors"), "wb") as g:
        g.write(f.read())
    write_check(model, sch, net, n, m, gen, a.out)
    print(f"interop.py predict: {a.model} -> {a.out}/check.safetensors (its predictions and DDIM-{STEPS} samples)")
    return 0


def export(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    sch = dt.Schedule(dt.schedule_config("linear", 1000))
    if a.net == "mlp":
        model, batch, n, m = dt.MLP(dim=2), 256, 1000, 1000
    else:
        model, batch, n, m = dt.UNet(SMALL_UNET), 32, 16, 16
    ema = dt.EMA(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for k in range(a.steps):
        if a.net == "mlp":
            x0, labels = dt.gaussians8(batch, gen), None
        else:
            x0, labels = dt.squares(batch, gen)
        loss = dt.diffusion_loss(model, sch, x0, labels, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
        if (k + 1) % 50 == 0:
            print(f"interop.py export {a.net}: step {k + 1}, loss {loss.item():.4f}")
    model.eval()
    os.makedirs(a.out, exist_ok=True)
    dt.save_model(os.path.join(a.out, "model.safetensors"), model, sch, ema=ema.model)
    write_check(model, sch, a.net, n, m, gen, a.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"interop.py export {a.net}: {params} parameters trained {a.steps} steps in PyTorch -> "
          f"{a.out}/model.safetensors, {a.out}/check.safetensors")
    return 0


def limit_text(v):
    """1e-05 -> "1e-5"."""
    m, e = f"{v:.0e}".split("e")
    return f"{m}e{int(e)}"


def compare(name, mine, ref, limit):
    """Prints the figures; True when within the limit."""
    d = (mine.double() - ref.double()).abs().max().item()
    scale = ref.double().abs().max().item()
    rel = d / scale if scale > 0 else d
    ok = rel <= limit                     # NaN fails
    print(f"  {name}: max |PyTorch - diffusion.h| = {d:.3g}, relative {rel:.3g} (limit {limit_text(limit)})"
          f"{'' if ok else '  FAIL'}")
    return ok


def check(a):
    mpath, cpath = os.path.join(a.dir, "model.safetensors"), os.path.join(a.dir, "check.safetensors")
    for p in (mpath, cpath):
        if not os.path.exists(p):
            print(f"interop.py check: {p} is missing", file=sys.stderr)
            return 1
    try:
        model, _, sch, _ = dt.load_model(mpath)
        ref, meta = dt.load_safetensors(cpath)
    except (ValueError, KeyError, OSError) as e:
        print(f"interop.py check: {e}", file=sys.stderr)
        return 1
    is_unet = isinstance(model, dt.UNet)
    need = ["x", "t", "pred", "x_T", "ddim"] + (["labels"] if is_unet and model.cfg["num_classes"] > 0 else [])
    missing = [k for k in need if k not in ref]
    if missing:
        print(f"interop.py check: {cpath} has no tensor {missing[0]!r}", file=sys.stderr)
        return 1
    steps = int(meta.get("steps", STEPS))
    x, t, x_T = ref["x"], ref["t"], ref["x_T"]
    labels = ref["labels"].round().long() if "labels" in ref else None
    m = x_T.shape[0]
    if x.shape[0] != t.shape[0] or ref["pred"].shape != x.shape or ref["ddim"].shape != x_T.shape:
        print(f"interop.py check: {cpath}: the tensors' shapes do not agree", file=sys.stderr)
        return 1
    with torch.no_grad():
        pred = dt.apply(model, x, t, labels)
        ddim = dt.ddim_sample(model, sch, x_T, steps, labels[:m] if labels is not None else None)
    params = sum(p.numel() for p in model.parameters())
    print(f"interop.py check {a.dir} ({'U-Net' if is_unet else 'MLP'}, {params} parameters, from diffusion.h):")
    ok = compare(f"predictions on {x.shape[0]} inputs", pred, ref["pred"], LIMIT_PRED)
    ok &= compare(f"DDIM-{steps} samples from the same x_T ({m})", ddim, ref["ddim"], LIMIT_DDIM)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--net", choices=("mlp", "unet"), default="mlp")
    e.add_argument("--steps", type=int, default=200)
    e.add_argument("--out", required=True)
    e.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("check")
    c.add_argument("dir")
    p = sub.add_parser("predict")
    p.add_argument("model")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    return export(a) if a.cmd == "export" else check(a) if a.cmd == "check" else predict(a)


if __name__ == "__main__":
    sys.exit(main())
