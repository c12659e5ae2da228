#!/usr/bin/env python3
"""PyTorch side of stackflow's speed comparison (see bench/compare.py).

Builds Stage-I G/D and Stage-II G/D with the layer sizes of StackGAN-Pytorch
(GF_DIM=128, DF_DIM=64, Z_DIM=100, CONDITION_DIM=128, TEXT.DIMENSION=1024,
R_NUM=4 by default; widths are flags) and times, on random data:

  train  : one full GAN iteration = G forward, D step (real / wrong / fake
           pairs, BCE, Adam) and G step (BCE [+ uncond BCE for Stage-II]
           + 2.0 * KL, Adam), Adam lr 2e-4 betas (0.5, 0.999)
  sample : generator forward only, eval mode, no autograd

It is what `stackflow bench graphs/stackgan256.ron --set gf_dim=G --set df_dim=D
--stage S --batch B` runs. Prints median ms/iteration after warm-up and parameter
counts, and (with --json FILE) appends one JSON object per measurement.

Usage examples:
  python bench/torch_reference.py --stage 1 --batch 16 --gf 16 --df 16 --mode all
  python bench/torch_reference.py --stage 2 --batch 4 --mode train --iters 3
  python bench/torch_reference.py --stage 1 --batch 64 --flops      # FLOP count
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn


# ----------------------------------------------------------------- config
class Cfg:
    z_dim = 100
    cond_dim = 128
    text_dim = 1024
    gf_dim = 128
    df_dim = 64
    r_num = 4
    kl_coeff = 2.0


# ----------------------------------------------------------------- blocks
def c3(cin, cout):
    """3x3 conv, stride 1, pad 1, no bias."""
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=False)


def c4s2(cin, cout):
    """4x4 conv, stride 2, pad 1, no bias (halves H and W)."""
    return nn.Conv2d(cin, cout, 4, 2, 1, bias=False)


def up_block(cin, cout):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         c3(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(True))


def lrelu():
    return nn.LeakyReLU(0.2, inplace=True)


class Residual(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.body = nn.Sequential(c3(ch, ch), nn.BatchNorm2d(ch), nn.ReLU(True),
                                  c3(ch, ch), nn.BatchNorm2d(ch))

    def forward(self, x):
        return torch.relu(self.body(x) + x)


class CondAug(nn.Module):
    """Conditioning augmentation: text embedding -> (c, mu, logvar)."""

    def __init__(self, cfg):
        super().__init__()
        self.cd = cfg.cond_dim
        self.fc = nn.Linear(cfg.text_dim, 2 * cfg.cond_dim, bias=True)

    def forward(self, emb):
        h = torch.relu(self.fc(emb))
        mu, logvar = h[:, :self.cd], h[:, self.cd:]
        eps = torch.randn_like(mu)
        return mu + eps * torch.exp(0.5 * logvar), mu, logvar


class CondLogits(nn.Module):
    """D head; conditioned: concat c (tiled 4x4), 3x3 conv, BN, lrelu, 4x4/4 conv."""

    def __init__(self, ndf, nef, cond):
        super().__init__()
        self.cond, self.nef = cond, nef
        layers = []
        if cond:
            layers += [c3(ndf * 8 + nef, ndf * 8), nn.BatchNorm2d(ndf * 8), lrelu()]
        layers += [nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=4), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, h, c=None):
        if self.cond:
            c = c.view(-1, self.nef, 1, 1).expand(-1, -1, h.size(2), h.size(3))
            h = torch.cat([h, c], 1)
        return self.net(h).view(-1)


class G1(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ngf = cfg.gf_dim * 8
        self.ngf = ngf
        self.ca = CondAug(cfg)
        self.fc = nn.Sequential(nn.Linear(cfg.z_dim + cfg.cond_dim, ngf * 16, bias=False),
                                nn.BatchNorm1d(ngf * 16), nn.ReLU(True))
        self.ups = nn.Sequential(up_block(ngf, ngf // 2), up_block(ngf // 2, ngf // 4),
                                 up_block(ngf // 4, ngf // 8), up_block(ngf // 8, ngf // 16))
        self.img = nn.Sequential(c3(ngf // 16, 3), nn.Tanh())

    def forward(self, emb, z):
        c, mu, logvar = self.ca(emb)
        h = self.fc(torch.cat([z, c], 1)).view(-1, self.ngf, 4, 4)
        return None, self.img(self.ups(h)), mu, logvar


def d_encoder(ndf, n_down):
    """n_down 4x4/2 convs from 3 channels; BN on all but the first; lrelu."""
    layers = [c4s2(3, ndf), lrelu()]
    ch = ndf
    for _ in range(n_down - 1):
        layers += [c4s2(ch, ch * 2), nn.BatchNorm2d(ch * 2), lrelu()]
        ch *= 2
    return layers, ch


class D1(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        layers, _ = d_encoder(cfg.df_dim, 4)          # 64 -> 4, ndf*8 channels
        self.encode = nn.Sequential(*layers)
        self.cond_logits = CondLogits(cfg.df_dim, cfg.cond_dim, True)
        self.uncond_logits = None

    def forward(self, img):
        return self.encode(img)


class G2(nn.Module):
    def __init__(self, cfg, g1):
        super().__init__()
        ngf = cfg.gf_dim
        self.cd = cfg.cond_dim
        self.g1 = g1
        for p in self.g1.parameters():
            p.requires_grad_(False)
        self.ca = CondAug(cfg)
        self.encoder = nn.Sequential(c3(3, ngf), nn.ReLU(True),
                                     c4s2(ngf, ngf * 2), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                                     c4s2(ngf * 2, ngf * 4), nn.BatchNorm2d(ngf * 4), nn.ReLU(True))
        self.joint = nn.Sequential(c3(cfg.cond_dim + ngf * 4, ngf * 4),
                                   nn.BatchNorm2d(ngf * 4), nn.ReLU(True))
        self.res = nn.Sequential(*[Residual(ngf * 4) for _ in range(cfg.r_num)])
        self.ups = nn.Sequential(up_block(ngf * 4, ngf * 2), up_block(ngf * 2, ngf),
                                 up_block(ngf, ngf // 2), up_block(ngf // 2, ngf // 4))
        self.img = nn.Sequential(c3(ngf // 4, 3), nn.Tanh())

    def forward(self, emb, z):
        _, low, _, _ = self.g1(emb, z)
        low = low.detach()
        enc = self.encoder(low)
        c, mu, logvar = self.ca(emb)
        c = c.view(-1, self.cd, 1, 1).expand(-1, -1, enc.size(2), enc.size(3))
        h = self.res(self.joint(torch.cat([enc, c], 1)))
        return low, self.img(self.ups(h)), mu, logvar


class D2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ndf = cfg.df_dim
        layers, ch = d_encoder(ndf, 6)                # 256 -> 4, ndf*32 channels
        layers += [c3(ch, ndf * 16), nn.BatchNorm2d(ndf * 16), lrelu(),
                   c3(ndf * 16, ndf * 8), nn.BatchNorm2d(ndf * 8), lrelu()]
        self.encode = nn.Sequential(*layers)
        self.cond_logits = CondLogits(ndf, cfg.cond_dim, True)
        self.uncond_logits = CondLogits(ndf, cfg.cond_dim, False)

    def forward(self, img):
        return self.encode(img)


def init_weights(m):
    n = m.__class__.__name__
    if "Conv" in n or "Linear" in n:
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif "BatchNorm" in n:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


# ----------------------------------------------------------------- losses
bce = nn.BCELoss()


def kl_loss(mu, logvar):
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


def d_loss(netD, real, fake, cond, ones, zeros):
    b = real.size(0)
    rf = netD(real)
    ff = netD(fake)
    e_real = bce(netD.cond_logits(rf, cond), ones)
    e_wrong = bce(netD.cond_logits(rf[:b - 1], cond[1:]), zeros[1:])
    e_fake = bce(netD.cond_logits(ff, cond), zeros)
    if netD.uncond_logits is not None:
        u_real = bce(netD.uncond_logits(rf), ones)
        u_fake = bce(netD.uncond_logits(ff), zeros)
        return (e_real + u_real) / 2.0 + (e_fake + e_wrong + u_fake) / 3.0
    return e_real + (e_fake + e_wrong) * 0.5


def g_loss(netD, fake, cond, ones):
    ff = netD(fake)
    e = bce(netD.cond_logits(ff, cond), ones)
    if netD.uncond_logits is not None:
        e = e + bce(netD.uncond_logits(ff), ones)
    return e


# ----------------------------------------------------------------- harness
def build(stage, cfg):
    torch.manual_seed(0)
    if stage == 1:
        g, d = G1(cfg), D1(cfg)
        g.apply(init_weights)
    else:
        g1 = G1(cfg)
        g1.apply(init_weights)
        g = G2(cfg, g1)
        g.apply(init_weights)
        d = D2(cfg)
    d.apply(init_weights)
    return g, d


def nparams(m, trainable_only=False):
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable_only)


class Trainer:
    def __init__(self, stage, batch, cfg):
        self.cfg = cfg
        self.g, self.d = build(stage, cfg)
        self.g.train()
        self.d.train()
        self.imsize = 64 if stage == 1 else 256
        self.batch = batch
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam([p for p in self.g.parameters() if p.requires_grad],
                                      lr=2e-4, betas=(0.5, 0.999))
        self.real = torch.rand(batch, 3, self.imsize, self.imsize) * 2 - 1
        self.emb = torch.randn(batch, cfg.text_dim)
        self.noise = torch.empty(batch, cfg.z_dim)
        self.ones = torch.ones(batch)
        self.zeros = torch.zeros(batch)

    def train_step(self):
        self.noise.normal_(0, 1)
        _, fake, mu, logvar = self.g(self.emb, self.noise)
        cond = mu.detach()
        self.d.zero_grad(set_to_none=False)
        err_d = d_loss(self.d, self.real, fake.detach(), cond, self.ones, self.zeros)
        err_d.backward()
        self.opt_d.step()
        self.g.zero_grad(set_to_none=False)
        err_g = g_loss(self.d, fake, cond, self.ones) + kl_loss(mu, logvar) * self.cfg.kl_coeff
        err_g.backward()
        self.opt_g.step()
        return float(err_d.detach()), float(err_g.detach())

    def g_fwd_bwd(self):
        """generator alone: forward + backward of mean(image) + KL (no optimiser)"""
        self.noise.normal_(0, 1)
        _, fake, mu, logvar = self.g(self.emb, self.noise)
        self.g.zero_grad(set_to_none=False)
        (fake.mean() + kl_loss(mu, logvar)).backward()

    def d_fwd_bwd(self):
        """discriminator alone on real images: forward + backward of its BCE (no optimiser)"""
        self.d.zero_grad(set_to_none=False)
        f = self.d(self.real)
        cond = self.emb[:, :self.cfg.cond_dim]
        e = bce(self.d.cond_logits(f, cond), self.ones)
        if self.d.uncond_logits is not None:
            e = e + bce(self.d.uncond_logits(f), self.ones)
        e.backward()

    def sample_step(self):
        self.g.eval()
        with torch.inference_mode():
            self.noise.normal_(0, 1)
            _, fake, _, _ = self.g(self.emb, self.noise)
        self.g.train()
        return float(fake[0, 0, 0, 0])


def time_it(fn, warmup, iters):
    for i in range(warmup):
        r = fn()
        if i == 0 and isinstance(r, tuple):
            print(f"  first iteration losses: D {r[0]:.4f} G {r[1]:.4f}")
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return ts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", type=int, default=1, choices=[1, 2])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--mode", default="all", choices=["train", "sample", "all", "params", "nets"])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave)")
    ap.add_argument("--gf", type=int, default=128)
    ap.add_argument("--df", type=int, default=64)
    ap.add_argument("--rnum", type=int, default=4)
    ap.add_argument("--flops", action="store_true", help="count FLOPs of one train/sample step")
    ap.add_argument("--json", default="", help="append results as JSON lines to this file")
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    cfg = Cfg()
    cfg.gf_dim, cfg.df_dim, cfg.r_num = a.gf, a.df, a.rnum

    tr = Trainer(a.stage, a.batch, cfg)
    g_total, g_train, d_total = nparams(tr.g), nparams(tr.g, True), nparams(tr.d)
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} "
          f"mkldnn={torch.backends.mkldnn.is_available()} cpu_capability="
          f"{torch.backends.cpu.get_cpu_capability()}")
    print(f"stage {a.stage} batch {a.batch} gf={a.gf} df={a.df} r_num={a.rnum}")
    print(f"params: G total {g_total:,} (trainable {g_train:,})  D {d_total:,}")
    if a.mode == "params":
        return

    out = []
    if a.flops:
        from torch.utils.flop_counter import FlopCounterMode
        for name, fn in (("train", tr.train_step), ("sample", tr.sample_step),
                         ("g_fb", tr.g_fwd_bwd), ("d_fb", tr.d_fwd_bwd)):
            fc = FlopCounterMode(display=False)
            with fc:
                fn()
            print(f"FLOPs {name}: {fc.get_total_flops() / 1e9:.2f} GFLOP per iteration")
            out.append(dict(impl="torch", stage=a.stage, batch=a.batch, kind=name + "_flops",
                            gflop=fc.get_total_flops() / 1e9))
    else:
        modes = {"all": ["train", "sample"], "nets": ["g_fb", "d_fb"]}.get(a.mode, [a.mode])
        fns = {"train": tr.train_step, "sample": tr.sample_step, "g_fb": tr.g_fwd_bwd, "d_fb": tr.d_fwd_bwd}
        for m in modes:
            fn = fns[m]
            ts = time_it(fn, a.warmup, a.iters)
            med = statistics.median(ts)
            print(f"{m:6s} stage{a.stage} b{a.batch}: median {med:10.1f} ms  "
                  f"(min {min(ts):.1f}, max {max(ts):.1f}, n={len(ts)})")
            out.append(dict(impl="torch", stage=a.stage, batch=a.batch, kind=m, median_ms=med,
                            all_ms=ts, threads=torch.get_num_threads(),
                            g_params=g_total, g_trainable=g_train, d_params=d_total))
    if a.json:
        with open(a.json, "a") as f:
            for o in out:
                f.write(json.dumps(o) + "\n")


if __name__ == "__main__":
    sys.exit(main())
