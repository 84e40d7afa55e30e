#!/usr/bin/python3
"""diffusers_ref.py - the tables and timesteps of a diffusers scheduler_config.json, from diffusers' formulas.

An independent reference for diffusion.h's diffusers config reader
(dfn_diffusers_config_read, dfn_diffusers_timesteps; make test-interop
compares them with this). Written from the definitions in diffusers'
schedulers (scheduling_ddpm.py, scheduling_ddim.py: the beta schedules,
betas_for_alpha_bar, rescale_zero_terminal_snr, set_timesteps), with numpy:

  betas, alphas_cumprod  in float64 with the exact formulas (diffusers itself
                         rounds them to float32; this is what they are meant
                         to be):
      "linear"             beta_i = linspace(beta_start, beta_end, T)
      "scaled_linear"      beta_i = linspace(sqrt(beta_start), sqrt(beta_end), T)^2
      "squaredcos_cap_v2"  beta_i = min(1 - f((i+1)/T) / f(i/T), 0.999),
                           f(t) = cos((t + 0.008) / 1.008 pi/2)^2
      "sigmoid"            beta_i = sigmoid(linspace(-6, 6, T)) (beta_end - beta_start)
                           + beta_start   (DDPMScheduler only: DDIMScheduler refuses it)
      trained_betas        as given
      rescale_betas_zero_snr   sqrt(alphas_cumprod) shifted to 0 at the end and scaled
                           back to its first value, betas recomputed from it
      alphas_cumprod = cumprod(1 - betas)
  timesteps              exactly set_timesteps(S) of the class, 0-based as in
                         diffusers (the library's t is this + 1), numpy's
                         arithmetic (round half to even; arange with a float
                         step, which can give S + 1 values for some T and S):
      "linspace"   round(linspace(0, T - 1, S))[::-1]
      "leading"    round(arange(S) * (T // S))[::-1] + steps_offset
      "trailing"   round(arange(T, 0, -T / S)) - 1

Usage: python3 tools/torch/diffusers_ref.py CONFIG.json [--steps 1,2,5,10,50] > OUT.json
Writes {"class": ..., "betas": [T], "alphas_cumprod": [T], "timesteps": {"S": [...], ...}};
step counts above T (which diffusers refuses) are left out. Floats are
printed with repr (they read back to the same double).
"""
import argparse
import json
import math
import sys

import numpy as np

DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                trained_betas=None, timestep_spacing="leading", steps_offset=0, rescale_betas_zero_snr=False)


def betas_of(c, cls):
    """The betas (T) in float64."""
    T, b0, b1 = int(c["num_train_timesteps"]), float(c["beta_start"]), float(c["beta_end"])
    if c["trained_betas"] is not None:
        betas = np.array(c["trained_betas"], dtype=np.float64)
    elif c["beta_schedule"] == "linear":
        betas = np.linspace(b0, b1, T, dtype=np.float64)
    elif c["beta_schedule"] == "scaled_linear":
        betas = np.linspace(math.sqrt(b0), math.sqrt(b1), T, dtype=np.float64) ** 2
    elif c["beta_schedule"] == "squaredcos_cap_v2":
        def f(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=np.float64)
    elif c["beta_schedule"] == "sigmoid" and cls == "DDPMScheduler":
        betas = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, T, dtype=np.float64))) * (b1 - b0) + b0
    else:
        sys.exit(f"diffusers_ref: {cls} has no beta_schedule {c['beta_schedule']!r}")
    if c["rescale_betas_zero_snr"]:
        a = np.sqrt(np.cumprod(1.0 - betas))
        a0, aT = a[0], a[-1]
        a = (a - aT) * (a0 / (a0 - aT))
        ab = a ** 2
        betas = 1.0 - np.concatenate([ab[:1], ab[1:] / ab[:-1]])
    return betas


def timesteps_of(c, S):
    """set_timesteps(S).timesteps, 0-based, as Python ints."""
    T, spacing = int(c["num_train_timesteps"]), c["timestep_spacing"]
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, S).round()[::-1].copy().astype(np.int64)
    elif spacing == "leading":
        ratio = T // S
        ts = (np.arange(0, S) * ratio).round()[::-1].copy().astype(np.int64)
        ts += int(c["steps_offset"])
    elif spacing == "trailing":
        ratio = T / S
        ts = np.round(np.arange(T, 0, -ratio)).astype(np.int64)
        ts -= 1
    else:
        sys.exit(f"diffusers_ref: timestep_spacing {spacing!r} is not linspace, leading or trailing")
    return [int(v) for v in ts]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--steps", default="1,2,3,5,7,10,16,20,25,50,100,250")
    a = ap.parse_args()
    with open(a.config) as f:
        raw = json.load(f)
    cls = raw.get("_class_name", "DDPMScheduler")
    if cls not in ("DDPMScheduler", "DDIMScheduler"):
        sys.exit(f"diffusers_ref: _class_name {cls!r} is not DDPMScheduler or DDIMScheduler")
    c = dict(DEFAULTS)
    c.update({k: v for k, v in raw.items() if k in DEFAULTS})
    betas = betas_of(c, cls)
    if len(betas) != int(c["num_train_timesteps"]):
        sys.exit(f"diffusers_ref: {len(betas)} trained_betas for num_train_timesteps {c['num_train_timesteps']}")
    ac = np.cumprod(1.0 - betas)
    steps = [int(s) for s in a.steps.split(",") if s]
    ts = {str(S): timesteps_of(c, S) for S in steps if 1 <= S <= len(betas)}

    def floats(v):
        return "[" + ", ".join(repr(float(x)) for x in v) + "]"
    out = ['{"class": ' + json.dumps(cls) + ",",
           ' "betas": ' + floats(betas) + ",",
           ' "alphas_cumprod": ' + floats(ac) + ",",
           ' "timesteps": {' + ", ".join(f'"{k}": {json.dumps(v)}' for k, v in ts.items()) + "}}"]
    print("\n".join(out))


if __name__ == "__main__":
    main()
