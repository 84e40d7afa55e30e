"""dfn_torch.py - diffusion.h's networks, schedules, DDIM sampler and model files in PyTorch.

The "twins" here compute the same functions as diffusion.h's MLP and U-Net
from the same weights, and their state_dict names are the tensor names of
the safetensors files diffusion.h reads and writes
(dfn_model_load_safetensors / dfn_model_save_safetensors; manual section 9
of diffusion.h has the table). So a model trained in PyTorch runs in C and
one trained in C runs here.

    import dfn_torch as dt
    model = dt.MLP(dim=2)                                   # or dt.UNet(height=8, ...)
    dt.save_model("m.safetensors", model, dt.schedule_config("linear", 1000), ema=ema_model)
    model, ema, sch, meta = dt.load_model("m.safetensors")
    x = dt.ddim_sample(ema or model, sch, torch.randn(100, 2), steps=50)

Layouts: the MLP takes x (N, D); the U-Net's forward takes NCHW like any
PyTorch network, while diffusion.h and the files' data tensors use NHWC
(`apply` and `ddim_sample` take and return diffusion.h's layout). t is the
library's t in 1..T, given to the networks as a float. Labels are
0..C-1, or -1 for "none" (row C of the class embedding); None means all -1.

Only the standard library, torch and numpy are used (Debian's python3-torch
and python3-numpy are enough).
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VERSION = "0.15.1"          # written as the "diffusion.h" metadata value


# --------------------------------------------------------------------------- configs

def mlp_config(cfg=None, **kw):
    """A complete MLP config: dfn_mlp_config_default(dim) updated by cfg and kw."""
    c = dict(cfg or {}, **kw)
    dim = int(c.get("dim", 2))
    out = dict(dim=dim, hidden=128, blocks=3, time_dim=128, input_emb_dim=32 if dim <= 3 else 0,
               input_scale=25.0, num_classes=0, act="gelu", prediction="eps")
    unknown = set(c) - set(out)
    if unknown:
        raise ValueError(f"MLP config: unknown field(s) {sorted(unknown)}")
    out.update(c)
    if out["act"] not in ACTIVATIONS or out["prediction"] not in PREDICTIONS:
        raise ValueError(f"MLP config: bad act or prediction in {out}")
    return out


def unet_config(cfg=None, **kw):
    """A complete U-Net config: the defaults diffusion.h's reader uses
    (dfn_unet_config_default(1, 32, 32)) updated by cfg and kw."""
    c = dict(cfg or {}, **kw)
    out = dict(height=32, width=32, channels=1, cond_channels=0, base_channels=32, levels=3,
               mult=[1, 2, 2], blocks=1, attention=[0, 0, 1], mid_attention=1, groups=8, time_dim=128,
               num_classes=0, prediction="eps")
    unknown = set(c) - set(out)
    if unknown:
        raise ValueError(f"U-Net config: unknown field(s) {sorted(unknown)}")
    out.update(c)
    out["mult"], out["attention"] = list(out["mult"]), list(out["attention"])
    L = out["levels"]
    if len(out["mult"]) != L or len(out["attention"]) != L:
        raise ValueError("U-Net config: mult and attention need one value per level")
    if out["height"] % (1 << (L - 1)) or out["width"] % (1 << (L - 1)):
        raise ValueError("U-Net config: height and width must be multiples of 2^(levels - 1)")
    if any((out["base_channels"] * m) % out["groups"] for m in out["mult"]):
        raise ValueError("U-Net config: groups must divide every channel count")
    if out["prediction"] not in PREDICTIONS:
        raise ValueError(f"U-Net config: bad prediction {out['prediction']!r}")
    return out


def freqs(dim):
    """f_k = 10000^(-k/h), k = 0..h-1, h = dim/2: computed in double, rounded to
    float32 (as dfn_sinusoidal_embedding)."""
    h = dim // 2
    return torch.tensor([math.exp(-9.210340371976184 * k / h) for k in range(h)], dtype=torch.float32)


def sin_emb(v, f):
    """[sin(v f_0..f_{h-1}), cos(...)] for v (N,): (N, 2h)."""
    u = v.unsqueeze(-1) * f
    return torch.cat([u.sin(), u.cos()], dim=-1)


ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU, "silu": nn.SiLU,
               "gelu": lambda: nn.GELU(approximate="tanh")}      # diffusion.h's GELU is the tanh form
PREDICTIONS = ("eps", "v", "x0", "flow")


def class_rows(labels, n, C, device):
    """The class-embedding rows of labels: the label, or C ("none") for -1 / None."""
    if labels is None:
        return torch.full((n,), C, dtype=torch.long, device=device)
    lab = torch.as_tensor(labels, device=device).long()
    if ((lab < -1) | (lab >= C)).any():
        raise ValueError(f"labels must be in -1..{C - 1}")
    return torch.where(lab < 0, torch.full_like(lab, C), lab)


# --------------------------------------------------------------------------- the MLP

class MLP(nn.Module):
    """diffusion.h's MLP (section "The MLP noise network"):
        e   = temb(t) + class_emb[c]                     (class_emb when num_classes > 0)
        in  = [x, emb(scale x_1), ..., emb(scale x_D), e]
        h_0 = act(W_in in + b_in);  h_l = h_{l-1} + act(W_l h_{l-1} + b_l);  out = W_out h_L + b_out
    Parameters in registration order = diffusion.h's flat order."""

    def __init__(self, cfg=None, **kw):
        super().__init__()
        self.cfg = c = mlp_config(cfg, **kw)
        D, H, Ei, Td = c["dim"], c["hidden"], c["input_emb_dim"], c["time_dim"]
        self.inp = nn.Linear(D + D * Ei + Td, H)
        self.blocks = nn.ModuleList([nn.Linear(H, H) for _ in range(c["blocks"])])
        self.out = nn.Linear(H, D)
        if c["num_classes"] > 0:
            self.class_emb = nn.Embedding(c["num_classes"] + 1, Td)   # N(0, 1), as diffusion.h
        self.act = ACTIVATIONS[c["act"]]()
        self.register_buffer("f_in", freqs(max(Ei, 2)), persistent=False)
        self.register_buffer("f_t", freqs(Td), persistent=False)

    def features(self, x, t, labels=None):
        """[x, emb(scale x_1), ..., emb(scale x_D), temb(t) + class_emb]; t a float tensor (N,)."""
        c = self.cfg
        parts = [x]
        if c["input_emb_dim"] > 0:
            u = (c["input_scale"] * x).unsqueeze(-1) * self.f_in         # (N, D, Ei/2)
            parts.append(torch.cat([u.sin(), u.cos()], dim=-1).flatten(1))  # per coordinate [sin, cos]
        e = sin_emb(t, self.f_t)
        if c["num_classes"] > 0:
            e = e + self.class_emb(class_rows(labels, x.shape[0], c["num_classes"], x.device))
        parts.append(e)
        return torch.cat(parts, dim=-1)

    def forward(self, x, t, labels=None):
        h = self.act(self.inp(self.features(x, t, labels)))
        for blk in self.blocks:
            h = h + self.act(blk(h))
        return self.out(h)

    def c_params(self):
        return c_params(self)


# --------------------------------------------------------------------------- the U-Net

def zero_(m):
    """ADM's zero initialization (a ResBlock's conv2, the attention output, the output conv)."""
    nn.init.zeros_(m.weight)
    nn.init.zeros_(m.bias)
    return m


class ResBlock(nn.Module):
    """conv2(SiLU(norm2(conv1(SiLU(norm1(x))) + emb(SiLU(e))))) + skip(x) (1x1 conv when ci != co)."""

    def __init__(self, ci, co, tdim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, ci, eps=1e-5)
        self.conv1 = nn.Conv2d(ci, co, 3, padding=1)
        self.emb = nn.Linear(tdim, co)                       # W_p, b_p
        self.norm2 = nn.GroupNorm(groups, co, eps=1e-5)
        self.conv2 = zero_(nn.Conv2d(co, co, 3, padding=1))
        self.skip = nn.Conv2d(ci, co, 1) if ci != co else None

    def forward(self, x, semb):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(semb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class Attention(nn.Module):
    """x + proj(softmax(q k^T / sqrt(C)) v) of norm(x), one head over the H W positions."""

    def __init__(self, c, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-5)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = zero_(nn.Linear(c, c))
        self.scale = 1.0 / math.sqrt(c)

    def forward(self, x):
        B, C, Hh, Ww = x.shape
        n = self.norm(x).flatten(2).transpose(1, 2)          # (B, HW, C): positions in y, x order
        q, k, v = self.qkv(n).split(C, dim=-1)
        p = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * self.scale, dim=-1)
        o = self.proj(torch.bmm(p, v))
        return x + o.transpose(1, 2).reshape(B, C, Hh, Ww)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """diffusion.h's U-Net (section "The U-Net noise network for images"), the
    plan of dfn__unet_plan: a list of steps over a skip stack.
        e = emb2(SiLU(emb1(sin_emb(t)))) + class_emb[c];  h = inp([x, cond])
        down: per level `blocks` x (ResBlock [+ attention]), avg-pool 2x2 but after the last
        middle: ResBlock [+ attention] + ResBlock
        up: per level (deepest first) blocks + 1 x (ResBlock on [h, skip] [+ attention]),
            Upsample but after level 0
        out = out_conv(SiLU(out_norm(h)))
    Every output of the input conv, of a down block and of a pooling is a skip.
    layers.{k} are the ResBlocks, attentions and upsamplings in plan order."""

    def __init__(self, cfg=None, **kw):
        super().__init__()
        self.cfg = c = unet_config(cfg, **kw)
        E, Td, G = c["base_channels"], c["time_dim"], c["groups"]
        self.register_buffer("f_t", freqs(E), persistent=False)
        self.emb1 = nn.Linear(E, Td)
        self.emb2 = nn.Linear(Td, Td)
        if c["num_classes"] > 0:
            self.class_emb = nn.Embedding(c["num_classes"] + 1, Td)
        self.inp = nn.Conv2d(c["channels"] + c["cond_channels"], E, 3, padding=1)
        self.layers = nn.ModuleList()
        self.steps = []                  # (kind, index into layers or -1)

        def add(kind, m=None):
            if m is not None:
                self.layers.append(m)
            self.steps.append((kind, len(self.layers) - 1 if m is not None else -1))

        stack, cur, L = [E], E, c["levels"]
        for lv in range(L):
            ch = E * c["mult"][lv]
            for _ in range(c["blocks"]):
                add("res", ResBlock(cur, ch, Td, G))
                cur = ch
                if c["attention"][lv]:
                    add("attn", Attention(ch, G))
                add("push")
                stack.append(cur)
            if lv < L - 1:
                add("down")
                add("push")
                stack.append(cur)
        add("res", ResBlock(cur, cur, Td, G))
        if c["mid_attention"]:
            add("attn", Attention(cur, G))
        add("res", ResBlock(cur, cur, Td, G))
        for lv in range(L - 1, -1, -1):
            ch = E * c["mult"][lv]
            for _ in range(c["blocks"] + 1):
                add("res_skip", ResBlock(cur + stack.pop(), ch, Td, G))
                cur = ch
                if c["attention"][lv]:
                    add("attn", Attention(ch, G))
            if lv > 0:
                add("up", Upsample(cur))
        assert not stack
        self.out_norm = nn.GroupNorm(G, cur, eps=1e-5)
        self.out_conv = zero_(nn.Conv2d(cur, c["channels"], 3, padding=1))

    def forward(self, x, t, labels=None, cond=None):
        """x (N, channels, H, W), t (N,) float, labels (N,) or None, cond (N, cond_channels, H, W)."""
        c = self.cfg
        e = self.emb2(F.silu(self.emb1(sin_emb(t, self.f_t))))
        if c["num_classes"] > 0:
            e = e + self.class_emb(class_rows(labels, x.shape[0], c["num_classes"], x.device))
        semb = F.silu(e)
        if c["cond_channels"] > 0:
            if cond is None:
                raise ValueError("this U-Net needs cond (N, cond_channels, H, W)")
            x = torch.cat([x, cond], dim=1)
        h = self.inp(x)
        stack = [h]
        for kind, i in self.steps:
            if kind == "res":
                h = self.layers[i](h, semb)
            elif kind == "res_skip":
                h = self.layers[i](torch.cat([h, stack.pop()], dim=1), semb)
            elif kind in ("attn", "up"):
                h = self.layers[i](h)
            elif kind == "push":
                stack.append(h)
            else:                                            # down
                h = F.avg_pool2d(h, 2)
        return self.out_conv(F.silu(self.out_norm(h)))

    def c_params(self):
        return c_params(self)


def c_params(model):
    """The parameters in diffusion.h's flat order (= registration order), each
    with its layout: "conv" for a 4-D weight (diffusion.h keeps (co, kh, kw, ci)
    in memory; its files hold PyTorch's (co, ci, kh, kw)), else "dense"."""
    return [(p, "conv" if p.dim() == 4 else "dense") for p in model.parameters()]


def network_name(model):
    m = model.module if hasattr(model, "module") else model    # DDP / DataParallel
    return "unet" if isinstance(m, UNet) else "mlp"


def make_model(network, cfg):
    """A twin from the metadata's "network" and its config dict."""
    if network == "mlp":
        return MLP(cfg)
    if network == "unet":
        return UNet(cfg)
    raise ValueError(f"unknown network {network!r} (not 'mlp' or 'unet')")


def apply(model, x, t, labels=None, cond=None):
    """The network on diffusion.h's layout: MLP x (N, D); U-Net x (N, H, W, C)
    and cond (N, H, W, cond_channels), output NHWC. t: ints or floats (N,)."""
    t = torch.as_tensor(t, device=x.device).float()
    if isinstance(model, UNet):
        cn = cond.permute(0, 3, 1, 2) if cond is not None else None
        return model(x.permute(0, 3, 1, 2), t, labels, cn).permute(0, 2, 3, 1).contiguous()
    return model(x, t, labels)


# --------------------------------------------------------------------------- schedules

SCHEDULE_KINDS = ("linear", "cosine", "sigmoid", "custom", "flow", "scaled_linear", "sigmoid_betas",
                  "linear_betas")


def schedule_config(kind="linear", T=1000, **kw):
    """dfn_schedule_config_default(kind, T) as a dict (the "schedule" metadata), updated by kw."""
    c = dict(kind=kind, T=T, beta_start=0.0001, beta_end=0.02, cosine_s=0.008, sigmoid_start=-3.0,
             sigmoid_end=3.0, sigmoid_tau=1.0, max_beta=0.999, zero_terminal_snr=0, flow_shift=1.0)
    unknown = set(kw) - set(c)
    if unknown:
        raise ValueError(f"schedule: unknown field(s) {sorted(unknown)}")
    c.update(kw)
    if c["kind"] not in SCHEDULE_KINDS:
        raise ValueError(f"schedule: unknown kind {c['kind']!r}")
    return c


def raw_beta(c, t, betas=None):
    """beta_t (t = 1..T) before a zero-terminal-SNR rescale, in double (dfn__raw_beta)."""
    kind, T = c["kind"], c["T"]
    d = max(T - 1, 1)                            # (the operations in diffusion.h's order, for its bits)
    if kind == "linear":                         # ends scaled by 1000/T
        scale = 1000.0 / T
        b1, bT = c["beta_start"] * scale, c["beta_end"] * scale
        return b1 + (bT - b1) * (t - 1) / d
    if kind == "linear_betas":
        return c["beta_start"] + (c["beta_end"] - c["beta_start"]) * (t - 1) / d
    if kind == "scaled_linear":
        r0, r1 = math.sqrt(c["beta_start"]), math.sqrt(c["beta_end"])
        r = r0 + (r1 - r0) * (t - 1) / d
        return r * r
    if kind == "sigmoid_betas":
        x = -6.0 + 12.0 * (t - 1) / d
        return c["beta_start"] + (c["beta_end"] - c["beta_start"]) / (1.0 + math.exp(-x))
    if kind == "custom":
        return float(betas[t - 1])
    if kind == "cosine":                         # alphabar_t / alphabar_{t-1} = f(t) / f(t-1)
        def fc(u):
            return math.cos(((u / T + c["cosine_s"]) / (1.0 + c["cosine_s"])) * math.pi / 2.0) ** 2
        prev, cur = fc(t - 1), fc(t)
    elif kind == "sigmoid":
        def sg(z):
            return 1.0 / (1.0 + math.exp(-z / c["sigmoid_tau"]))

        def ab(u):
            v0, v1 = sg(c["sigmoid_start"]), sg(c["sigmoid_end"])
            return (v1 - sg((u / T) * (c["sigmoid_end"] - c["sigmoid_start"]) + c["sigmoid_start"])) / (v1 - v0)
        prev, cur = ab(t - 1), ab(t)
    else:
        raise ValueError(f"no betas for schedule kind {kind!r}")
    b = 1.0 - cur / prev if prev > 0.0 else 1.0
    return min(b, c["max_beta"])


class Schedule:
    """diffusion.h's schedule tables (dfn_schedule_init, MATH.md section 2):
    computed in double, indexed t = 0..T (row 0 = clean data). Attributes:
      alphabar     list of T + 1 doubles (the float32 table is f32 of these)
      sqrt_ab, sqrt_1mab, c0, ct     float32 tensors (T + 1): a_t, s_t and the
                   posterior coefficients of x0 and x_t (section 3)
      sigma        list of T + 1 floats: sqrt of the float32 posterior variance
      flow         True for a flow schedule (a_t + s_t = 1)
    cfg: a schedule_config dict, or an int T (the default linear schedule);
    betas: the T betas of a "custom" schedule."""

    def __init__(self, cfg=1000, betas=None):
        c = schedule_config("linear", cfg) if isinstance(cfg, int) else schedule_config(**cfg)
        T = c["T"]
        self.cfg, self.T, self.flow = c, T, c["kind"] == "flow"
        if c["kind"] == "custom" and (betas is None or len(betas) != T):
            raise ValueError("a custom schedule needs its T betas (the tensor schedule.betas)")
        self.betas = None if betas is None else [float(b) for b in betas]
        a_t, s_t, alphabar, pv, c0, ct = [1.0], [0.0], [1.0], [0.0], [1.0], [0.0]
        if self.flow:                            # section 12: a = 1 - u, s = u
            a_prev, s_prev, k = 1.0, 0.0, c["flow_shift"]
            for t in range(1, T + 1):
                fr = t / T
                u = 1.0 if t >= T else k * fr / (1.0 + (k - 1.0) * fr)
                a, sd = 1.0 - u, u
                r = a / a_prev
                var = sd * sd - r * r * s_prev * s_prev
                a_t.append(a); s_t.append(sd); alphabar.append(a * a)
                pv.append(var * s_prev * s_prev / (sd * sd))
                c0.append(a_prev * var / (sd * sd))
                ct.append(r * s_prev * s_prev / (sd * sd))
                a_prev, s_prev = a, sd
        else:
            raw = [raw_beta(c, t, betas) for t in range(1, T + 1)]
            a_first, a_last = 1.0, 0.0
            if c["zero_terminal_snr"]:           # Lin et al. 2023: sqrt(alphabar_T) = 0, alphabar_1 kept
                ab = 1.0
                for t in range(1, T + 1):
                    ab *= 1.0 - raw[t - 1]
                    if t == 1:
                        a_first = math.sqrt(ab)
                a_last = math.sqrt(ab)
            ab, ab_prev = 1.0, 1.0
            for t in range(1, T + 1):
                ab *= 1.0 - raw[t - 1]
                if c["zero_terminal_snr"]:
                    sq = 0.0 if t == T else (math.sqrt(ab) - a_last) * a_first / (a_first - a_last)
                    abar = sq * sq
                    b = 1.0 - abar / ab_prev
                else:
                    abar, b = ab, raw[t - 1]
                alphabar.append(abar)
                a_t.append(math.sqrt(abar))
                s_t.append(math.sqrt(1.0 - abar))
                pv.append(b * (1.0 - ab_prev) / (1.0 - abar))
                c0.append(math.sqrt(ab_prev) * b / (1.0 - abar))
                ct.append(math.sqrt(1.0 - b) * (1.0 - ab_prev) / (1.0 - abar))
                ab_prev = abar

        def tab(v):
            return torch.tensor(v, dtype=torch.float64).float()
        self.alphabar = alphabar
        self.sqrt_ab, self.sqrt_1mab = tab(a_t), tab(s_t)
        self.sigma = [f32(math.sqrt(f32(v))) for v in pv]       # sqrt of the float table, in double
        self.c0, self.ct = tab(c0), tab(ct)


def f32(v):
    """v rounded to float32 (returned as a Python float)."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def trailing_timesteps(T, S):
    """diffusion.h's trailing DDIM subsequence: tau_0 = 0, tau_i = floor(i T / S + 1/2)."""
    return [0] + [(2 * i * T + S) // (2 * S) for i in range(1, S + 1)]


def to_x0_eps(sch, prediction, t, pred, x):
    """x0_hat and eps_hat from the network's output at t (dfn__to_x0_eps), in float32."""
    a, b = f32(float(sch.sqrt_ab[t])), f32(float(sch.sqrt_1mab[t]))
    if prediction == "eps":
        return (x - b * pred) / a, pred
    if prediction == "v":
        x0, eps = a * x - b * pred, b * x + a * pred
        if sch.flow:
            n2 = f32(a * a + b * b)
            x0, eps = x0 / n2, eps / n2
        return x0, eps
    if prediction == "flow":                      # w = eps - x0
        return (x - b * pred) / (a + b), (x + a * pred) / (a + b)
    return pred, (x - a * pred) / b               # x0


@torch.no_grad()
def ddim_sample(model, sch, x, steps=50, labels=None, cond=None, prediction=None):
    """DDIM with eta 0 on the trailing subsequence, as diffusion.h's DDIM sampler
    (no clipping, final step to alphabar_0 = 1): x_p = a_p x0_hat + sqrt(1 - ab_p) eps_hat,
    or s_p eps_hat on a flow schedule. x: x_T in diffusion.h's layout; returns x_0."""
    if prediction is None:
        prediction = model.cfg["prediction"]
    tau = trailing_timesteps(sch.T, steps)
    x = x.float().clone()
    for i in range(steps, 0, -1):
        t, p = tau[i], tau[i - 1]
        out = apply(model, x, torch.full((x.shape[0],), float(t), device=x.device), labels, cond)
        x0, eps = to_x0_eps(sch, prediction, t, out, x)
        if sch.flow:
            d = f32(float(sch.sqrt_1mab[p]))
        else:
            d = f32(math.sqrt(max(1.0 - f32(sch.alphabar[p]), 0.0)))
        x = f32(float(sch.sqrt_ab[p])) * x0 + d * eps
    return x


# --------------------------------------------------------------------------- safetensors

_DTYPES = {"F32": 4, "F16": 2, "BF16": 2}


def load_safetensors(path):
    """(tensors, metadata) of a safetensors file: an ordered dict name -> float32
    tensor (F32, F16 and BF16 converted exactly) and the "__metadata__" dict."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > 100_000_000 or 8 + n > len(buf):
        raise ValueError(f"{path}: header length {n} out of range")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    data = memoryview(buf)[8 + n:]
    tensors = {}
    for name, d in header.items():
        dtype, shape, (b, e) = d["dtype"], [int(s) for s in d["shape"]], d["data_offsets"]
        if dtype not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: dtype {dtype} is not F32, F16 or BF16")
        count = math.prod(shape)
        if not (0 <= b <= e <= len(data)) or e - b != count * _DTYPES[dtype]:
            raise ValueError(f"{path}: tensor {name}: data offsets {b}, {e} do not fit its shape {shape}")
        raw = np.frombuffer(data[b:e], dtype={"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[dtype])
        if dtype == "BF16":                       # the high half of a float32
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = torch.from_numpy(raw.astype(np.float32)).reshape(shape)
    return tensors, meta


def save_safetensors(path, tensors, metadata=None):
    """Writes tensors (name -> tensor, in that order) as F32 with metadata
    (string -> string); the header is padded with spaces to a multiple of 8.
    The file is written under a temporary name and renamed."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        a = t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- model files

def save_model(path, model, schedule=None, ema=None, betas=None, extra_meta=None):
    """A model file diffusion.h loads (dfn_model_load_safetensors): the weights
    by name, the EMA weights (a model of the same config) as "ema." + name,
    and the metadata "diffusion.h", "network", "config", "schedule".
    schedule: a schedule_config dict, a Schedule, or None (linear, T = 1000);
    betas: the T betas of a custom schedule (written as "schedule.betas")."""
    m = model.module if hasattr(model, "module") else model
    if isinstance(schedule, Schedule):
        betas = schedule.betas if betas is None else betas
        schedule = schedule.cfg
    schedule = schedule_config(**schedule) if schedule else schedule_config()
    tensors = dict(m.state_dict())
    if ema is not None:
        e = ema.module if hasattr(ema, "module") else ema
        tensors.update(("ema." + k, v) for k, v in e.state_dict().items())
    if schedule["kind"] == "custom":
        if betas is None:
            raise ValueError("a custom schedule needs betas")
        tensors["schedule.betas"] = torch.as_tensor(betas, dtype=torch.float32)
    meta = {"diffusion.h": VERSION, "network": network_name(m),
            "config": json.dumps(m.cfg, separators=(",", ":")),
            "schedule": json.dumps(schedule, separators=(",", ":"))}
    meta.update(extra_meta or {})
    save_safetensors(path, tensors, meta)


def load_model(path, device="cpu"):
    """(model, ema_model or None, Schedule, metadata) from a model file written by
    diffusion.h or save_model. Every tensor of the network must be there with
    its shape; the EMA model is built when the "ema." tensors are."""
    tensors, meta = load_safetensors(path)
    for key in ("network", "config", "schedule"):
        if key not in meta:
            raise ValueError(f"{path}: metadata {key!r} missing (not a diffusion.h model file)")
    model = make_model(meta["network"], json.loads(meta["config"]))
    own = model.state_dict()

    def take(prefix):
        sd = {}
        for k, v in own.items():
            if prefix + k not in tensors:
                raise ValueError(f"{path}: tensor {prefix + k!r} missing")
            if tuple(tensors[prefix + k].shape) != tuple(v.shape):
                raise ValueError(f"{path}: tensor {prefix + k!r} has shape {list(tensors[prefix + k].shape)}, "
                                 f"the network wants {list(v.shape)}")
            sd[k] = tensors[prefix + k]
        return sd
    extra = [k for k in tensors if k != "schedule.betas" and k not in own
             and not (k.startswith("ema.") and k[4:] in own)]
    if extra:
        raise ValueError(f"{path}: tensor {extra[0]!r} is not a tensor of this network")
    model.load_state_dict(take(""))
    ema = None
    if any(k.startswith("ema.") for k in tensors):
        ema = make_model(meta["network"], model.cfg)
        ema.load_state_dict(take("ema."))
        ema.to(device).eval()
    sched = json.loads(meta["schedule"])
    betas = tensors["schedule.betas"].tolist() if "schedule.betas" in tensors else None
    return model.to(device).eval(), ema, Schedule(sched, betas), meta


# --------------------------------------------------------------------------- training

def gaussians8(n, generator=None):
    """DFN_DATA2D_GAUSSIANS8: FFJORD's 8 Gaussians, standardized (n, 2)."""
    R, s = 8 / math.sqrt(33), 1 / math.sqrt(33)
    k = torch.randint(0, 8, (n,), generator=generator).float() * (math.pi / 4)
    c = torch.stack([R * k.cos(), R * k.sin()], dim=1)
    return c + s * torch.randn(n, 2, generator=generator)


def squares(n, generator=None, size=8):
    """Synthetic images of 3 classes (n, 1, size, size) in about [-1, 1] and their
    labels (n,): a bright quarter-size square in the corner given by the class
    (0 top left, 1 bottom left, 2 top right), as tests/interop.c draws them."""
    labels = torch.randint(0, 3, (n,), generator=generator)
    h = size // 2
    x = torch.full((n, 1, size, size), -0.8)
    for i, c in enumerate(labels.tolist()):
        oy, ox = (h if c == 1 else 0), (h if c == 2 else 0)
        x[i, 0, oy:oy + h, ox:ox + h] = 0.8
    return x + 0.05 * torch.randn(x.shape, generator=generator), labels


def diffusion_loss(model, sch, x0, labels=None, p_uncond=0.1, generator=None):
    """dfn_train_step's loss: t uniform in 1..T, x_t = a_t x0 + s_t eps, the MSE
    (mean over every value) of the network's output against its target
    (eps, v = a eps - s x0, x0, or the velocity eps - x0). Labels are dropped
    to -1 with probability p_uncond (classifier-free guidance). x0 in the
    network's forward layout (a U-Net's NCHW)."""
    m = model.module if hasattr(model, "module") else model
    dev, n = x0.device, x0.shape[0]
    t = torch.randint(1, sch.T + 1, (n,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator).to(dev)
    if labels is not None and m.cfg["num_classes"] > 0 and p_uncond > 0:
        drop = torch.rand(n, generator=generator) < p_uncond
        labels = torch.where(drop.to(dev), torch.full_like(labels, -1), labels)
    shape = (n,) + (1,) * (x0.dim() - 1)
    a, s = sch.sqrt_ab[t].view(shape).to(dev), sch.sqrt_1mab[t].view(shape).to(dev)
    out = model(a * x0 + s * eps, t.float().to(dev), labels)
    kind = m.cfg["prediction"]
    target = {"eps": eps, "v": a * eps - s * x0, "x0": x0, "flow": eps - x0}[kind]
    return F.mse_loss(out, target)


class EMA:
    """The EMA of the weights as diffusion.h's trainer keeps it:
    ema = d ema + (1 - d) p with d_k = min(decay, (1 + k) / (10 + k)) at step k = 1, 2, ..."""

    def __init__(self, model, decay=0.999):
        m = model.module if hasattr(model, "module") else model
        self.model = make_model(network_name(m), m.cfg).to(next(m.parameters()).device)
        self.model.load_state_dict(m.state_dict())
        self.model.eval().requires_grad_(False)
        self.decay, self.k = decay, 0

    @torch.no_grad()
    def update(self, model):
        m = model.module if hasattr(model, "module") else model
        self.k += 1
        d = min(self.decay, (1 + self.k) / (10 + self.k))
        for pe, p in zip(self.model.parameters(), m.parameters()):
            pe.mul_(d).add_(p.detach(), alpha=1 - d)
