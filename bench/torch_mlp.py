#!/usr/bin/python3
"""torch_mlp.py - the diffusion.h default MLP in PyTorch, timed like bench_mlp.c.

The same network as dfn_mlp_config_default(2): input features
[x, emb(25 x_1), emb(25 x_2), temb(t)] (32 sinusoidal features per
coordinate, 128 for t; [sin..., cos...] with f_k = 10000^(-k/h), h = dim/2,
as dfn_sinusoidal_embedding), Linear(194, 128) + GELU(tanh), 3 residual
blocks h = h + GELU(Linear(128, 128)(h)), Linear(128, 2); eps-prediction on
a linear T = 1000 schedule. Training: Adam lr 1e-3, MSE on eps, EMA 0.999
(like dfn_train_step with the default trainer). Sampling: DDIM-50
(trailing, eta 0) and DDPM-1000 (small variance) on 10,000 samples, in
torch.no_grad(), with the sampler math of diffusion.h. Times are medians of
several repetitions after a warm-up (time.perf_counter, monotonic).

Usage: /usr/bin/python3 bench/torch_mlp.py [--threads N] [--quick] [--json FILE]
                                           [--check FILE]
  --threads N   torch.set_num_threads(N) (default: $OPENBLAS_NUM_THREADS or 1);
                the caller sets OPENBLAS_NUM_THREADS=N too (bench/bench.mk)
  --quick       fewer repetitions, DDPM-1000 on 2,000 samples
  --json FILE   also write the results as a flat JSON object
  --check FILE  load the weights and inputs written by `bench_mlp --check FILE`
                and compare this model's outputs with diffusion.h's
FLOPs are counted as in bench_mlp.c: S = sum over layers of in * out;
training step 2 B (3 S - 194 * 128), sampling 2 n S per step.
"""
import argparse
import json
import math
import os
import statistics
import struct
import sys
import time

import torch
import torch.nn as nn

D, EMB, TDIM, H, BLOCKS, T = 2, 32, 128, 128, 3, 1000
IN_DIM = D + D * EMB + TDIM
SCALE = 25.0
N_SAMPLES = 10000


def f32(v):
    """v rounded to float32 (returned as a Python float)."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def freqs(dim):
    """f_k = 10000^(-k/h), k = 0..h-1, h = dim/2, rounded to float32 from double."""
    h = dim // 2
    return torch.tensor([math.exp(-9.210340371976184 * k / h) for k in range(h)], dtype=torch.float32)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(IN_DIM, H)
        self.blocks = nn.ModuleList([nn.Linear(H, H) for _ in range(BLOCKS)])
        self.out = nn.Linear(H, D)
        self.act = nn.GELU(approximate="tanh")
        self.register_buffer("f_in", freqs(EMB))
        self.register_buffer("f_t", freqs(TDIM))

    def features(self, x, t):
        """[x, emb(25 x_1), ..., emb(25 x_D), temb(t)]; t is a float tensor (B,)."""
        u = (SCALE * x).unsqueeze(-1) * self.f_in                # (B, D, EMB/2)
        ex = torch.cat([u.sin(), u.cos()], dim=-1).flatten(1)    # (B, D*EMB): per coordinate [sin, cos]
        ut = t.unsqueeze(-1) * self.f_t                          # (B, TDIM/2)
        return torch.cat([x, ex, ut.sin(), ut.cos()], dim=-1)

    def forward(self, x, t):
        h = self.act(self.inp(self.features(x, t)))
        for blk in self.blocks:
            h = h + self.act(blk(h))
        return self.out(h)


def num_flops_sum():
    return IN_DIM * H + BLOCKS * H * H + H * D


def train_flops(B):
    return 2.0 * B * (3 * num_flops_sum() - IN_DIM * H)


class Schedule:
    """Linear schedule of diffusion.h (beta 1e-4 .. 0.02 for T = 1000): tables
    computed in double, stored as float32, indexed t = 0..T (row 0 = clean)."""

    def __init__(self, T):
        betas = [0.0] + [1e-4 + (0.02 - 1e-4) * (t - 1) / (T - 1) for t in range(1, T + 1)]
        ab, ab_prev = 1.0, 1.0
        alphabar, pv, c0, ct = [1.0], [0.0], [1.0], [0.0]
        for t in range(1, T + 1):
            b = betas[t]
            ab *= 1.0 - b
            alphabar.append(ab)
            pv.append(b * (1.0 - ab_prev) / (1.0 - ab))
            c0.append(math.sqrt(ab_prev) * b / (1.0 - ab))
            ct.append(math.sqrt(1.0 - b) * (1.0 - ab_prev) / (1.0 - ab))
            ab_prev = ab
        def tab(v):
            return torch.tensor(v, dtype=torch.float64).float()
        self.alphabar = alphabar
        self.sqrt_ab = tab([math.sqrt(a) for a in alphabar])
        self.sqrt_1mab = tab([math.sqrt(1.0 - a) for a in alphabar])
        self.sigma = [f32(math.sqrt(f32(v))) for v in pv]       # sqrt of the float table, in double
        self.c0, self.ct = tab(c0), tab(ct)


def gmm8(gen, n):
    """FFJORD's 8 Gaussians standardized (= DFN_DATA2D_GAUSSIANS8)."""
    R, s = 8 / math.sqrt(33), 1 / math.sqrt(33)
    k = torch.randint(0, 8, (n,), generator=gen).float() * (math.pi / 4)
    c = torch.stack([R * k.cos(), R * k.sin()], dim=1)
    return c + s * torch.randn(n, 2, generator=gen)


def bench_train(sch, B, warm, steps, reps):
    torch.manual_seed(1)
    model = MLP()
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    pool = [gmm8(gen, B) for _ in range(8)]
    params = list(model.parameters())
    n_step = [0]

    def step(x0):
        t = torch.randint(1, T + 1, (B,))
        eps = torch.randn(B, D)
        xt = sch.sqrt_ab[t].unsqueeze(1) * x0 + sch.sqrt_1mab[t].unsqueeze(1) * eps
        out = model(xt, t.float())
        loss = torch.nn.functional.mse_loss(out, eps)   # mean over B and D, as dfn_train_step
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
        step(pool[i % 8])
    times = []
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(steps):
            loss = step(pool[i % 8])
        times.append((time.perf_counter() - t0) / steps)
    cpu = (time.process_time() - c0) / (time.perf_counter() - w0)
    rate = 1.0 / statistics.median(times)
    return dict(label=f"train step, batch {B}", rate=rate, unit="steps/s",
                gflops=train_flops(B) * rate * 1e-9,
                detail=f"median of {reps} x {steps} steps, cpu/wall {cpu:.2f} (loss {float(loss):.3f})")


@torch.no_grad()
def sample(model, sch, kind, n, gen):
    x = torch.randn(n, D, generator=gen)
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
                x = x + sch.sigma[t] * torch.randn(n, D, generator=gen)
    return x


def bench_sample(sch, kind, name, n, reps, warm):
    torch.manual_seed(1)
    model = MLP().eval()
    gen = torch.Generator().manual_seed(7)
    if warm:
        sample(model, sch, kind, 1024, gen)
    times = []
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        x = sample(model, sch, kind, n, gen)
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / (time.perf_counter() - w0)
    if not torch.isfinite(x).all():
        sys.exit("torch_mlp: non-finite samples")
    rate = n / statistics.median(times)
    evals = 50 if kind == "ddim" else T
    return dict(label=f"{name}, {n} samples", rate=rate, unit="samples/s",
                gflops=2.0 * num_flops_sum() * evals * rate * 1e-9,
                detail=(f"median of {reps} runs" if reps > 1 else f"1 run, {times[0]:.2f} s") + f", cpu/wall {cpu:.2f}")


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
    return 2.0 * 1024 ** 3 / statistics.median(ts) * 1e-9


def check(path):
    with open(path, "rb") as f:
        P, N = struct.unpack("<II", f.read(8))
        vals = torch.frombuffer(bytearray(f.read()), dtype=torch.float32)
    model = MLP()
    params = list(model.parameters())   # inp.W, inp.b, blocks (W, b) x 3, out.W, out.b: the C layout
    if P != sum(p.numel() for p in params) or vals.numel() != P + 5 * N:
        sys.exit(f"torch_mlp: {path}: {P} parameters, expected {sum(p.numel() for p in params)}")
    o = 0
    with torch.no_grad():
        for p in params:
            p.copy_(vals[o:o + p.numel()].view_as(p))
            o += p.numel()
        x = vals[o:o + 2 * N].view(N, 2); o += 2 * N
        t = vals[o:o + N]; o += N
        ref = vals[o:o + 2 * N].view(N, 2)
        out = model(x, t)
    err = (out - ref).abs().max().item()
    scale = ref.abs().max().item()
    print(f"torch_mlp --check: max |torch - diffusion.h| = {err:.3g} (outputs up to {scale:.3g}) over {N} inputs")
    return 0 if err <= 1e-4 * max(1.0, scale) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OPENBLAS_NUM_THREADS", "1")))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--check")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.check:
        return check(a.check)
    t_start = time.perf_counter()
    sch = Schedule(T)
    libs, blas = blas_in_use()
    mm = matmul_gflops()
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE",
                                                     "OPENBLAS_L2_SIZE", "LD_LIBRARY_PATH") if k in os.environ)
    print(f"PyTorch {torch.__version__}: the same MLP, {a.threads} thread(s) "
          f"(torch.set_num_threads({a.threads}); {env or 'no BLAS/OpenMP variables set'})")
    print(f"  BLAS     {blas}")
    for lib in libs:
        print(f"           {lib} -> {os.path.realpath(lib)}")
    print(f"  matmul   1024 x 1024 float32: {mm:.1f} GFLOP/s (reference BLAS gives a few; OpenBLAS tens)")
    sys.stdout.flush()

    res = {}
    res["train_b256"] = bench_train(sch, 256, 20, 40 if a.quick else 150, 3 if a.quick else 7)
    res["train_b1024"] = bench_train(sch, 1024, 5, 10 if a.quick else 40, 3 if a.quick else 7)
    res["ddim50"] = bench_sample(sch, "ddim", "DDIM-50 sampling", N_SAMPLES, 1 if a.quick else 3, True)
    ddpm_n = 2000 if a.quick else N_SAMPLES
    res["ddpm1000"] = bench_sample(sch, "ddpm", "DDPM-1000 sampling", ddpm_n, 1, False)

    print(f"\n{'measurement':<36} {'value':>11} {'unit':<10} {'GFLOP/s':>8}")
    for r in res.values():
        print(f"{r['label']:<36} {r['rate']:11.1f} {r['unit']:<10} {r['gflops']:8.1f}  {r['detail']}")
    print(f"(total {time.perf_counter() - t_start:.1f} s)")
    if a.json:
        out = {"impl": "PyTorch " + torch.__version__, "threads": a.threads,
               "blas": blas,
               "matmul_gflops": round(mm, 2), "ddim50_n": N_SAMPLES, "ddpm1000_n": ddpm_n}
        for k, r in res.items():
            out[k + "_rate"] = r["rate"]
            out[k + "_gflops"] = r["gflops"]
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
