#!/usr/bin/python3
"""bench_torch.py - diffusion.h's default MLP and MNIST U-Net in PyTorch, timed like bench_dfn.c.

MLP: the same network as dfn_mlp_config_default(2): input features
[x, emb(25 x_1), emb(25 x_2), temb(t)] (32 sinusoidal features per
coordinate, 128 for t; [sin..., cos...] with f_k = 10000^(-k/h), h = dim/2,
as dfn_sinusoidal_embedding), Linear(194, 128) + GELU(tanh), 3 residual
blocks h = h + GELU(Linear(128, 128)(h)), Linear(128, 2).

U-Net: the same network as examples/mnist.c's default,
dfn_unet_config_default(1, 28, 28) with base_channels 16, time_dim 64,
groups 8 (the architecture of diffusion.h's section "The U-Net noise network
for images", in the library's operation order): e = W_e2 SiLU(W_e1
sin_emb_16(t) + b_e1) + b_e2; input conv3x3 1 -> 16; down: ResBlock 16 @28,
avgpool, ResBlock 16->32 @14, avgpool, ResBlock 32 + attention @7; middle
ResBlock, attention, ResBlock; up: 2 x (ResBlock on [h, skip] + attention)
@7, nearest x2 + conv3x3, 2 x ResBlock @14, nearest x2 + conv3x3, 2 x
ResBlock @28; out conv3x3(SiLU(GroupNorm(h))). ResBlock(x, e) =
conv2(SiLU(GN2(conv1(SiLU(GN1(x))) + W_p SiLU(e) + b_p))) + skip(x) (1x1
conv when channels change); attention: x + Wo softmax(q k^T / sqrt(C)) v of
GroupNorm(x), one head, q k v from one Linear(C, 3C). Tensors are NCHW
(diffusion.h's are NHWC; the function is the same). Initialization: PyTorch's
default (uniform +-1/sqrt(fan_in), as dfn_unet_init_weights), with the ADM
zeros (each ResBlock's conv2, the attention output, the output conv).

The two networks and the schedule tables are the PyTorch twins of
tools/torch/dfn_torch.py (imported from there), in these two configs.

Both: eps-prediction on a linear T = 1000 schedule. Training: Adam lr 1e-3,
MSE on eps, EMA 0.999 with the warm-up min(0.999, (1 + k) / (10 + k)) (like
dfn_train_step with the default trainer). Sampling: DDIM-50 (trailing, eta
0) and DDPM-1000 (small variance), in torch.no_grad(), with the sampler math
of diffusion.h. Every cell is the best of several timed repetitions after a
warm-up (time.perf_counter, monotonic); the rate by the process's CPU time
(time.process_time) is kept too: on 1 thread it does not drop when other
processes take the core.

Usage: /usr/bin/python3 bench/bench_torch.py [--threads N] [--quick] [--json FILE]
                                             [--check-mlp FILE] [--check-unet FILE]
  --threads N        torch.set_num_threads(N) (default: $OPENBLAS_NUM_THREADS or 1);
                     the caller sets OPENBLAS_NUM_THREADS=N and OMP_NUM_THREADS=N
                     too (bench/bench.mk)
  --quick            fewer repetitions, DDPM-1000 on 2,000 points
  --json FILE        also write the results as a flat JSON object
  --check-mlp FILE, --check-unet FILE
                     load the weights and inputs written by `bench_dfn --check-mlp
                     FILE --check-unet FILE` into these models and compare their
                     outputs with diffusion.h's (exit status 1 when they differ)
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "torch"))
import dfn_torch as dt          # noqa: E402  (the PyTorch twins of diffusion.h's networks)

T = 1000
D, EMB, TDIM, H, BLOCKS = 2, 32, 128, 128, 3           # the MLP
IN_DIM = D + D * EMB + TDIM
SCALE = 25.0
N_SAMPLES = 10000
UC = dict(height=28, width=28, channels=1, base_channels=16, levels=3, mult=[1, 2, 2], blocks=1,
          attention=[0, 0, 1], mid_attention=1, groups=8, time_dim=64)    # the U-Net
UNET_BATCH = 64
UNET_IMAGES = 32


f32 = dt.f32


def max_rss():
    """Max resident set size of this process so far, in bytes (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------- the networks
# The twins live in tools/torch/dfn_torch.py (with their safetensors names);
# here they get the two benchmark configs.

def MLP():
    return dt.MLP(dt.mlp_config(dim=D, hidden=H, blocks=BLOCKS, time_dim=TDIM, input_emb_dim=EMB,
                                input_scale=SCALE))


def UNet():
    return dt.UNet(UC)


def mlp_flops_sum():
    return IN_DIM * H + BLOCKS * H * H + H * D


def mlp_train_flops(B):
    return 2.0 * B * (3 * mlp_flops_sum() - IN_DIM * H)


def num_params(model):
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- schedule, data

Schedule = dt.Schedule       # the tables of dfn_schedule_init (linear, T = 1000 here)


def gmm8(gen, n):
    """FFJORD's 8 Gaussians standardized (= DFN_DATA2D_GAUSSIANS8)."""
    R, s = 8 / math.sqrt(33), 1 / math.sqrt(33)
    k = torch.randint(0, 8, (n,), generator=gen).float() * (math.pi / 4)
    c = torch.stack([R * k.cos(), R * k.sin()], dim=1)
    return c + s * torch.randn(n, 2, generator=gen)


def images(gen, n):
    """Stand-in digits (n, 1, 28, 28) in [-1, 1]: the speed does not depend on them."""
    return torch.rand(n, UC["channels"], UC["height"], UC["width"], generator=gen) * 2 - 1


# --------------------------------------------------------------------------- timing

def best(times):
    return min(times), max(times)


def detail(times):
    b, w = best(times)
    return f"best of {len(times)} (worst {100 * (w / b - 1):.0f}% slower)"


def bench_train(make_model, data, sch, B, warm, steps, reps):
    torch.manual_seed(1)
    model = make_model()
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    pool = [data(gen, B) for _ in range(4)]
    params = list(model.parameters())
    n_step = [0]

    def step(x0):
        t = torch.randint(1, T + 1, (B,))
        eps = torch.randn_like(x0)
        shape = (B,) + (1,) * (x0.dim() - 1)
        xt = sch.sqrt_ab[t].view(shape) * x0 + sch.sqrt_1mab[t].view(shape) * eps
        out = model(xt, t.float())
        loss = F.mse_loss(out, eps)              # mean over B and D, as dfn_train_step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n_step[0] += 1
        d = min(0.999, (1 + n_step[0]) / (10 + n_step[0]))
        with torch.no_grad():
            torch._foreach_mul_(ema, d)
            torch._foreach_add_(ema, params, alpha=1 - d)
        return loss

    for i in range(warm):
        step(pool[i % 4])
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(steps):
            step(pool[i % 4])
        times.append((time.perf_counter() - t0) / steps)
        cpu.append((time.process_time() - c0) / steps)
    return dict(rate=1.0 / min(times), cpurate=1.0 / min(cpu), detail=detail(times))


@torch.no_grad()
def sample(model, sch, kind, x, gen):
    n = x.shape[0]
    if kind == "ddim":
        S = 50
        tau = [0] + [(2 * i * T + S) // (2 * S) for i in range(1, S + 1)]   # trailing: round(i T / S)
    else:
        S = T
        tau = list(range(T + 1))
    tt = torch.empty(n)
    for i in range(S, 0, -1):
        t, p = tau[i], tau[i - 1]
        eps = model(x, tt.fill_(float(t)))
        x0 = (x - sch.sqrt_1mab[t] * eps) / sch.sqrt_ab[t]
        if kind == "ddim":                     # eta = 0: x_p = sqrt(ab_p) x0 + sqrt(1 - ab_p) eps
            d = f32(math.sqrt(max(1.0 - f32(sch.alphabar[p]), 0.0)))
            x = sch.sqrt_ab[p] * x0 + d * eps
        else:                                  # x_{t-1} = c0 x0 + ct x_t + sigma_t z (z = 0 at t = 1)
            x = sch.c0[t] * x0 + sch.ct[t] * x
            if t > 1:
                x = x + sch.sigma[t] * torch.randn(x.shape, generator=gen)
    return x


def bench_sample(model, sch, kind, shape, reps, warm_shape=None):
    gen = torch.Generator().manual_seed(7)
    if warm_shape:
        sample(model, sch, kind, torch.randn(warm_shape, generator=gen), gen)
    times, cpu = [], []
    for _ in range(reps):
        x = torch.randn(shape, generator=gen)
        t0, c0 = time.perf_counter(), time.process_time()
        x = sample(model, sch, kind, x, gen)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if not torch.isfinite(x).all():
        sys.exit("bench_torch: non-finite samples")
    return dict(rate=shape[0] / min(times), cpurate=shape[0] / min(cpu), detail=detail(times))


# --------------------------------------------------------------------------- BLAS

def blas_in_use():
    """(the BLAS libraries mapped into this process, a one-line summary)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            name = os.path.basename(line.split()[-1])
            if "blas" in name or "mkl" in name:
                libs.add(line.split()[-1])
    libs = sorted(libs)
    summary = ", ".join(os.path.basename(os.path.realpath(p)) for p in libs) or "none mapped"
    for lib in libs:
        if "openblas" not in lib:
            continue
        try:
            import ctypes
            h = ctypes.CDLL(lib)
            h.openblas_get_corename.restype = ctypes.c_char_p
            h.openblas_get_config.restype = ctypes.c_char_p
            version = " ".join(h.openblas_get_config().decode().split()[:2])
            variant = os.path.basename(os.path.dirname(os.path.realpath(lib)))   # openblas-pthread / -openmp
            summary = (f"{version} ({variant}), kernel {h.openblas_get_corename().decode()}, "
                       f"{h.openblas_get_num_threads()} thread(s)")
        except (OSError, AttributeError):
            pass
        break
    return libs, summary


def matmul_gflops():
    """Achieved GFLOP/s of a plain 1024 x 1024 float32 matmul (reference BLAS: a few)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(2):
        a @ b
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2.0 * 1024 ** 3 / min(ts) * 1e-9


# --------------------------------------------------------------------------- --check

def check(path, model, nchw):
    """Loads bench_dfn's weights and inputs into model; 0 when the outputs agree."""
    with open(path, "rb") as f:
        P, N, Dv = struct.unpack("<III", f.read(12))
        vals = torch.frombuffer(bytearray(f.read()), dtype=torch.float32)
    plist = model.c_params()
    count = sum(p.numel() for p, _ in plist)
    name = type(model).__name__
    if P != count or P != num_params(model) or vals.numel() != P + N * (2 * Dv + 1):
        print(f"bench_torch --check: {name}: diffusion.h has {P} parameters, this model {count} "
              f"({num_params(model)} registered)")
        return 1
    o = 0
    with torch.no_grad():
        for p, kind in plist:
            v = vals[o:o + p.numel()]
            if kind == "conv":                 # diffusion.h: (co, kh, kw, ci); PyTorch: (co, ci, kh, kw)
                co, ci, kh, kw = p.shape
                v = v.view(co, kh, kw, ci).permute(0, 3, 1, 2)
            p.copy_(v.reshape(p.shape))
            o += p.numel()
        x = vals[o:o + N * Dv]; o += N * Dv
        t = vals[o:o + N]; o += N
        ref = vals[o:o + N * Dv]
        if nchw:
            Hh, Ww, C = UC["height"], UC["width"], UC["channels"]
            out = model(x.view(N, Hh, Ww, C).permute(0, 3, 1, 2), t).permute(0, 2, 3, 1).reshape(-1)
        else:
            out = model(x.view(N, Dv), t).reshape(-1)
    err = (out - ref).abs().max().item()
    scale = ref.abs().max().item()
    ok = err <= 1e-4 * max(1.0, scale)
    print(f"bench_torch --check: {name}, {P} parameters: max |PyTorch - diffusion.h| = {err:.3g} "
          f"(outputs up to {scale:.3g}) over {N} inputs: {'same function' if ok else 'DIFFERENT'}")
    return 0 if ok else 1


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OPENBLAS_NUM_THREADS", "1")))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--check-mlp")
    ap.add_argument("--check-unet")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.check_mlp or a.check_unet:
        rc = 0
        if a.check_mlp:
            rc |= check(a.check_mlp, MLP(), False)
        if a.check_unet:
            rc |= check(a.check_unet, UNet(), True)
        return rc
    t_start = time.perf_counter()
    rss_import = max_rss()
    sch = Schedule(T)
    libs, blas = blas_in_use()
    mm = matmul_gflops()
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                                     "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LD_LIBRARY_PATH")
                   if k in os.environ)
    n_mlp, n_unet = num_params(MLP()), num_params(UNet())
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread(s) (torch.set_num_threads({a.threads}); "
          f"{env or 'no BLAS/OpenMP variables set'}); oneDNN (mkldnn) convolutions: "
          f"{torch.backends.mkldnn.is_available()}")
    print(f"  BLAS     {blas}")
    for lib in libs:
        print(f"           {lib} -> {os.path.realpath(lib)}")
    print(f"  matmul   1024 x 1024 float32: {mm:.1f} GFLOP/s (reference BLAS gives a few; OpenBLAS tens)")
    print(f"  models   MLP {n_mlp} parameters, U-Net {n_unet} parameters")
    sys.stdout.flush()

    q = a.quick
    ddpm_n = 2000 if q else N_SAMPLES
    res = {}
    res["mlp_train_b256"] = bench_train(MLP, gmm8, sch, 256, 20, 40 if q else 100, 3 if q else 5)
    res["mlp_train_b1024"] = bench_train(MLP, gmm8, sch, 1024, 5, 10 if q else 30, 3 if q else 5)
    torch.manual_seed(1)
    mlp = MLP().eval()
    res["mlp_ddim50"] = bench_sample(mlp, sch, "ddim", (N_SAMPLES, D), 1 if q else 3, (1024, D))
    res["mlp_ddpm1000"] = bench_sample(mlp, sch, "ddpm", (ddpm_n, D), 1)
    rss_mlp = max_rss()
    res["unet_train_b64"] = bench_train(UNet, images, sch, UNET_BATCH, 1, 2 if q else 3, 2 if q else 3)
    torch.manual_seed(1)
    unet = UNet().eval()
    C = UC["channels"]
    res["unet_ddim50"] = bench_sample(unet, sch, "ddim", (UNET_IMAGES, C, UC["height"], UC["width"]),
                                      1 if q else 2)
    rss_unet = max_rss()

    labels = {"mlp_train_b256": "MLP train, batch 256 (steps/s)", "mlp_train_b1024": "MLP train, batch 1024 (steps/s)",
              "mlp_ddim50": f"MLP DDIM-50, {N_SAMPLES} points (samples/s)",
              "mlp_ddpm1000": f"MLP DDPM-1000, {ddpm_n} points (samples/s)",
              "unet_train_b64": f"U-Net train, batch {UNET_BATCH} (steps/s)",
              "unet_ddim50": f"U-Net DDIM-50, {UNET_IMAGES} images (images/s)"}
    print()
    for k, r in res.items():
        print(f"{labels[k]:<44} {r['rate']:11.2f}  {r['detail']}, by CPU time {r['cpurate']:.2f}")
    print(f"max RSS: {rss_import / 1e6:.0f} MB after import, {rss_mlp / 1e6:.0f} MB after the MLP, "
          f"{rss_unet / 1e6:.0f} MB after the U-Net")
    print(f"(total {time.perf_counter() - t_start:.1f} s)")
    if a.json:
        out = {"impl": "PyTorch " + torch.__version__, "threads": a.threads, "blas": blas,
               "mkldnn": int(torch.backends.mkldnn.is_available()),
               "matmul_gflops": round(mm, 2), "params_mlp": n_mlp, "params_unet": n_unet,
               "mlp_ddim50_n": N_SAMPLES, "mlp_ddpm1000_n": ddpm_n, "unet_ddim50_n": UNET_IMAGES,
               "rss_import": rss_import, "rss_mlp": rss_mlp, "rss_unet": rss_unet}
        for k, r in res.items():
            out[k + "_rate"] = r["rate"]
            out[k + "_cpurate"] = r["cpurate"]
        out["seconds"] = round(time.perf_counter() - t_start, 1)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
