#!/usr/bin/python3
"""train.py - train one of diffusion.h's networks in PyTorch, on any device, and save it for diffusion.h.

  python3 tools/torch/train.py --net mlp --steps 5000 --out mlp.safetensors
  python3 tools/torch/train.py --net unet --steps 20000 --device cuda --out unet.safetensors
  torchrun --nproc_per_node 2 tools/torch/train.py --net mlp --steps 50 --backend gloo --out ddp.safetensors

The output is a model file diffusion.h loads (dfn_model_load_safetensors):
the weights, their EMA ("ema." + name) and the metadata (network, config,
linear T = 1000 schedule). Training is dfn_train_step's: t uniform in 1..T,
MSE against the prediction target (eps by default), Adam, EMA with the
warm-up d_k = min(decay, (1 + k) / (10 + k)), labels dropped to "none" with
probability 0.1 when the network has classes.

Data:
  --net mlp    --data gaussians8 (DFN_DATA2D_GAUSSIANS8), the default 2D MLP
               (dfn_mlp_config_default(2))
  --net unet   --data mnist: the IDX files data/mnist/train-images-idx3-ubyte and
               train-labels-idx1-ubyte (examples/mnist.c's; --data-dir to change),
               pixels to [-1, 1], a 28x28 U-Net with 10 classes; --data squares
               (the default when the MNIST files are not there): synthetic 8x8
               images of 3 classes and a small U-Net

Under torchrun (WORLD_SIZE > 1) the model is wrapped in
DistributedDataParallel: every rank draws its own data (seed + rank), the
gradients are averaged, and rank 0 writes the file. --batch is per rank.
--backend: gloo (CPU, any machine) or nccl (CUDA); default nccl with CUDA,
else gloo.
"""
import argparse
import os
import struct
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dfn_torch as dt          # noqa: E402

MNIST_UNET = dict(height=28, width=28, channels=1, base_channels=16, levels=3, mult=[1, 2, 2], blocks=1,
                  attention=[0, 0, 1], mid_attention=1, groups=8, time_dim=64, num_classes=10)
SQUARES_UNET = dict(height=8, width=8, channels=1, base_channels=8, levels=2, mult=[1, 2], blocks=1,
                    attention=[0, 1], mid_attention=1, groups=4, time_dim=32, num_classes=3)


def read_idx(path):
    """An IDX file (MNIST's format): a uint8 tensor of its shape."""
    with open(path, "rb") as f:
        buf = f.read()
    zero, kind, nd = struct.unpack(">HBB", buf[:4])
    if zero != 0 or kind != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{nd}I", buf[4:4 + 4 * nd])
    return torch.frombuffer(bytearray(buf[4 + 4 * nd:]), dtype=torch.uint8).reshape(shape)


def pick_device(name):
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", choices=("mlp", "unet"), default="mlp")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best there is)")
    ap.add_argument("--batch", type=int, help="per rank (default 256 MLP, 64 U-Net)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", choices=("gaussians8", "mnist", "squares"))
    ap.add_argument("--data-dir", default="data/mnist")
    ap.add_argument("--backend", choices=("gloo", "nccl"))
    ap.add_argument("--log-every", type=int, default=0, help="steps between progress lines (default: steps/10)")
    a = ap.parse_args()

    # --- processes: one, or torchrun's (RANK, WORLD_SIZE, LOCAL_RANK in the environment)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(a.device)
    if world > 1:
        backend = a.backend or ("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    if device.type == "cpu" and world > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // world))

    # --- data and network
    data = a.data or ("gaussians8" if a.net == "mlp" else
                      "mnist" if os.path.exists(os.path.join(a.data_dir, "train-images-idx3-ubyte")) else "squares")
    if (a.net == "mlp") != (data == "gaussians8"):
        sys.exit(f"train.py: --data {data} is not for --net {a.net}")
    torch.manual_seed(a.seed)                      # the same initial weights on every rank
    gen = torch.Generator().manual_seed(a.seed + 1000 * rank)     # each rank its own data
    if a.net == "mlp":
        model = dt.MLP(dim=2)

        def batch_of(n):
            return dt.gaussians8(n, gen), None
    elif data == "mnist":
        images = read_idx(os.path.join(a.data_dir, "train-images-idx3-ubyte")).float() / 127.5 - 1.0
        lpath = os.path.join(a.data_dir, "train-labels-idx1-ubyte")
        digits = read_idx(lpath).long() if os.path.exists(lpath) else None
        images = images.unsqueeze(1)               # (n, 1, 28, 28)
        model = dt.UNet(MNIST_UNET, num_classes=10 if digits is not None else 0)

        def batch_of(n):
            i = torch.randint(0, images.shape[0], (n,), generator=gen)
            return images[i], (digits[i] if digits is not None else None)
    else:
        model = dt.UNet(SQUARES_UNET)

        def batch_of(n):
            return dt.squares(n, gen)
    B = a.batch or (256 if a.net == "mlp" else 64)
    model.to(device)
    ema = dt.EMA(model, a.ema)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    sch = dt.Schedule(dt.schedule_config("linear", 1000))
    params = sum(p.numel() for p in model.parameters())
    if rank == 0:
        print(f"train.py: {a.net} ({params} parameters) on {data}, {a.steps} steps of batch {B}"
              f"{f' x {world} processes (DDP)' if world > 1 else ''}, {device}")

    # --- training
    every = a.log_every or max(1, a.steps // 10)
    t0, run = time.perf_counter(), 0.0
    for k in range(1, a.steps + 1):
        x0, labels = batch_of(B)
        x0 = x0.to(device)
        labels = labels.to(device) if labels is not None else None
        loss = dt.diffusion_loss(net, sch, x0, labels, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()                            # DDP averages the gradients here
        opt.step()
        ema.update(model)
        run += loss.item()
        if rank == 0 and (k % every == 0 or k == a.steps):
            n = every if k % every == 0 else k % every
            print(f"train.py: step {k}/{a.steps}, loss {run / n:.4f}, "
                  f"{k / (time.perf_counter() - t0):.1f} steps/s", flush=True)
            run = 0.0
        elif k % every == 0:
            run = 0.0

    if rank == 0:
        model.cpu()
        dt.save_model(a.out, model, sch, ema=ema.model.cpu())
        print(f"train.py: wrote {a.out} (weights, EMA, linear T = 1000 schedule)")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
