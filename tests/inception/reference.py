"""PyTorch reference for stackflow's Inception metrics (FID, KID, IS).

`FidInception` is a plain-PyTorch mirror of the network that
`pytorch_fid.inception.fid_inception_v3()` builds (pytorch-fid 0.3.0 on top of
torchvision's `Inception3`), with one addition: a width divisor `div` that
divides every channel count (the input keeps its 3 channels), so that small
test networks have exactly the same topology, parameter names and semantics as
the real one.

Semantics reproduced (checked against pytorch-fid by `verify_against_pytorch_fid`):

* `BasicConv2d` = Conv2d(bias=False) -> BatchNorm2d(eps=0.001, eval mode:
  running statistics) -> ReLU.
* Stem: Conv2d_1a_3x3 (3x3, stride 2), Conv2d_2a_3x3 (3x3), Conv2d_2b_3x3 (3x3,
  pad 1), max_pool2d(3, stride 2), Conv2d_3b_1x1 (1x1), Conv2d_4a_3x3 (3x3),
  max_pool2d(3, stride 2). Convs without a stated padding use padding 0.
* Mixed_5b/5c/5d = FIDInceptionA, Mixed_6a = InceptionB, Mixed_6b..6e =
  FIDInceptionC, Mixed_7a = InceptionD, Mixed_7b = FIDInceptionE_1, Mixed_7c =
  FIDInceptionE_2. Branch outputs are concatenated along channels in the order
  listed in each block's `forward`.
* The "FID" blocks differ from torchvision's only in their pool branch:
  A, C and E_1 use avg_pool2d(3, stride 1, padding 1, count_include_pad=False)
  (TensorFlow's average pool ignores the padding), E_2 uses
  max_pool2d(3, stride 1, padding 1) (padding acts as -inf).
  InceptionB and InceptionD use max_pool2d(3, stride 2) with no padding.
* Global average pool after Mixed_7c -> the FID feature ("pool3", 2048/div).
  `fc` (Linear(2048/div, classes)) applied to it gives the logits (pytorch-fid
  itself never uses fc; 1008 classes in the published weights; dropout is the
  identity in eval mode).
* Input: images in [-1, 1], resized with
  F.interpolate(bilinear, align_corners=False, no antialiasing) to R x R.
  pytorch-fid's `InceptionV3` takes [0, 1] images, resizes them and then
  maps them with 2x - 1; since the bilinear weights sum to one the two orders
  agree up to float rounding.

Run this file directly to check the mirror against pytorch-fid's own network:

    python3 tests/inception/reference.py

Nothing here downloads weights: pytorch-fid's network is built with
`build_pytorch_fid_inception`, which repeats `fid_inception_v3` without its
`load_state_dict_from_url` call.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# The mirror
# ---------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """torchvision's BasicConv2d: conv (no bias) -> BN(eps=1e-3) -> ReLU.

    Batch norm always uses the running statistics (eval-mode semantics), so
    the result never depends on the batch or on `train()`/`eval()`.
    """

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        x = self.conv(x)
        bn = self.bn
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                         training=False, eps=bn.eps)
        return F.relu(x)


def _avg_pool_tf(x):
    """3x3 average pool, stride 1, padding 1, padding NOT counted (TF semantics)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """Mixed_5b/5c/5d. Output channels: 64 + 64 + 96 + pool_features (all / div)."""

    def __init__(self, cin, pool_features, c):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, c(64), 1)
        self.branch5x5_1 = BasicConv2d(cin, c(48), 1)
        self.branch5x5_2 = BasicConv2d(c(48), c(64), 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, padding=1)
        self.branch_pool = BasicConv2d(cin, c(pool_features), 1)
        self.cout = c(64) + c(64) + c(96) + c(pool_features)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Mixed_6a (grid 35 -> 17). Output channels: 384 + 96 (/ div) + cin (pool)."""

    def __init__(self, cin, c):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, c(384), 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, stride=2)
        self.cout = c(384) + c(96) + cin

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class FIDInceptionC(nn.Module):
    """Mixed_6b..6e. c7 = channels_7x7 (128, 160, 160, 192). Output: 4 x 192 (/ div)."""

    def __init__(self, cin, channels_7x7, c):
        super().__init__()
        c7 = c(channels_7x7)
        self.branch1x1 = BasicConv2d(cin, c(192), 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, c(192), (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, c(192), (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, c(192), 1)
        self.cout = 4 * c(192)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_2(bd)
        bd = self.branch7x7dbl_3(bd)
        bd = self.branch7x7dbl_4(bd)
        bd = self.branch7x7dbl_5(bd)
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Mixed_7a (grid 17 -> 8). Output channels: 320 + 192 (/ div) + cin (pool)."""

    def __init__(self, cin, c):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, c(192), 1)
        self.branch3x3_2 = BasicConv2d(c(192), c(320), 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, c(192), 1)
        self.branch7x7x3_2 = BasicConv2d(c(192), c(192), (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(c(192), c(192), (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(c(192), c(192), 3, stride=2)
        self.cout = c(320) + c(192) + cin

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        b7 = self.branch7x7x3_2(b7)
        b7 = self.branch7x7x3_3(b7)
        b7 = self.branch7x7x3_4(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (pool="avg", FIDInceptionE_1) and Mixed_7c (pool="max", FIDInceptionE_2).

    Output channels: 320 + (384 + 384) + (384 + 384) + 192 = 2048 (/ div).
    """

    def __init__(self, cin, pool, c):
        super().__init__()
        assert pool in ("avg", "max")
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, c(320), 1)
        self.branch3x3_1 = BasicConv2d(cin, c(384), 1)
        self.branch3x3_2a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, c(448), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(448), c(384), 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, c(192), 1)
        self.cout = c(320) + 2 * c(384) + 2 * c(384) + c(192)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "avg":
            # FIDInceptionE_1: TF average pool (padding not counted).
            bp = _avg_pool_tf(x)
        else:
            # FIDInceptionE_2: max pool (a quirk of the TF FID graph).
            bp = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        bp = self.branch_pool(bp)
        return torch.cat([b1, b3, bd, bp], 1)


class FidInception(nn.Module):
    """pytorch-fid's FIDInceptionV3 with every channel count divided by `div`.

    `forward(x)` takes images in [-1, 1] of shape [B, 3, S, S] and returns
    `(pool, logits)`: pool [B, 2048/div] (the FID feature), logits [B, classes].
    `resize` is the side R that images are bilinearly resized to (299 for
    FID; 75 is the smallest input the network accepts).

    Attribute (and so state_dict) names and order are exactly those of
    pytorch-fid's network: `Conv2d_1a_3x3.conv.weight`, ..., `fc.bias`.
    """

    def __init__(self, div=1, classes=1008, resize=299):
        super().__init__()
        self.div = div
        self.resize = resize

        def c(n):
            assert n % div == 0, f"{n} channels not divisible by div={div}"
            return n // div

        self.Conv2d_1a_3x3 = BasicConv2d(3, c(32), 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(c(32), c(32), 3)
        self.Conv2d_2b_3x3 = BasicConv2d(c(32), c(64), 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(c(64), c(80), 1)
        self.Conv2d_4a_3x3 = BasicConv2d(c(80), c(192), 3)
        self.Mixed_5b = FIDInceptionA(c(192), 32, c)
        self.Mixed_5c = FIDInceptionA(self.Mixed_5b.cout, 64, c)
        self.Mixed_5d = FIDInceptionA(self.Mixed_5c.cout, 64, c)
        self.Mixed_6a = InceptionB(self.Mixed_5d.cout, c)
        self.Mixed_6b = FIDInceptionC(self.Mixed_6a.cout, 128, c)
        self.Mixed_6c = FIDInceptionC(self.Mixed_6b.cout, 160, c)
        self.Mixed_6d = FIDInceptionC(self.Mixed_6c.cout, 160, c)
        self.Mixed_6e = FIDInceptionC(self.Mixed_6d.cout, 192, c)
        self.Mixed_7a = InceptionD(self.Mixed_6e.cout, c)
        self.Mixed_7b = FIDInceptionE(self.Mixed_7a.cout, "avg", c)
        self.Mixed_7c = FIDInceptionE(self.Mixed_7b.cout, "max", c)
        self.pool_dim = self.Mixed_7c.cout
        # The channel bookkeeping must land on torchvision's numbers.
        assert (self.Mixed_5b.cout, self.Mixed_5c.cout, self.Mixed_6a.cout,
                self.Mixed_7a.cout, self.pool_dim) == (c(256), c(288), c(768), c(1280), c(2048))
        self.fc = nn.Linear(self.pool_dim, classes)
        self.eval()

    def features(self, x):
        """Network on already resized images in [-1, 1] -> pool features [B, 2048/div]."""
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = self.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_3b_1x1(x)
        x = self.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Mixed_5b(x)
        x = self.Mixed_5c(x)
        x = self.Mixed_5d(x)
        x = self.Mixed_6a(x)
        x = self.Mixed_6b(x)
        x = self.Mixed_6c(x)
        x = self.Mixed_6d(x)
        x = self.Mixed_6e(x)
        x = self.Mixed_7a(x)
        x = self.Mixed_7b(x)
        x = self.Mixed_7c(x)
        # Global average pool (AdaptiveAvgPool2d((1, 1)) in pytorch-fid).
        return x.mean(dim=(2, 3))

    def forward(self, x):
        x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        pool = self.features(x)
        logits = self.fc(pool)
        return pool, logits


# ---------------------------------------------------------------------------
# Random parameters
# ---------------------------------------------------------------------------


def random_init_(model, seed):
    """Fill every parameter and BN buffer of `model` with seeded random values.

    Scales chosen so activations neither vanish nor explode through ~50 conv
    layers: convs kaiming-normal (fan_in, ReLU gain: std = sqrt(2 / fan_in)),
    BN gamma ~ U(0.8, 1.2), beta ~ N(0, 0.1), running_mean ~ N(0, 0.1),
    running_var ~ U(0.5, 1.5); fc weight ~ N(0, 1/in), bias ~ N(0, 0.1).
    Works for both the mirror and pytorch-fid's network (same module types).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model


def weights_state_dict(model):
    """state_dict as written to weights files: f32, contiguous, no num_batches_tracked."""
    return {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


# ---------------------------------------------------------------------------
# pytorch-fid's own network, built without downloading anything
# ---------------------------------------------------------------------------


def build_pytorch_fid_inception(num_classes=1008):
    """What `pytorch_fid.inception.fid_inception_v3()` builds, minus the weight download.

    Same steps as pytorch-fid 0.3.0: torchvision Inception3 through
    pytorch-fid's `_inception_v3` wrapper (num_classes=1008, aux_logits=False,
    weights=None, init_weights=False), then the Mixed blocks swapped for the
    FIDInception* classes. Parameters are left uninitialised: load a
    state_dict or call `random_init_`.
    """
    from pytorch_fid import inception as pfi

    net = pfi._inception_v3(num_classes=num_classes, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net.eval()


def pytorch_fid_feature_model(net):
    """pytorch-fid's own `InceptionV3` wrapper (pool3 features) around `net`.

    `InceptionV3.__init__` calls the module-level `fid_inception_v3()`, which
    would download the published weights; it is swapped for a function that
    returns `net` for the duration of the call, so the wrapper's blocks share
    `net`'s modules. Its forward takes [0, 1] images, resizes them to 299
    (bilinear, align_corners=False), maps them with 2x - 1 and returns
    [pool3 of shape B x 2048 x 1 x 1].
    """
    from pytorch_fid import inception as pfi

    original = pfi.fid_inception_v3
    pfi.fid_inception_v3 = lambda: net
    try:
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    finally:
        pfi.fid_inception_v3 = original
    return model.eval()


def verify_against_pytorch_fid(seed=0, batch=2, size=64, resize=299, tol=1e-4):
    """Check `FidInception(div=1)` against pytorch-fid's network; return the max differences.

    pytorch-fid's network gets random parameters and BN statistics; its
    state_dict is loaded into the mirror with strict=True (so every name
    matches); both see the same `batch` images of 3 x size x size in [-1, 1]
    (pytorch-fid's wrapper gets (x + 1) / 2, as it expects [0, 1]). The pool
    features come from pytorch-fid's `InceptionV3` wrapper, the logits from
    torchvision's `Inception3.forward` (fc after avgpool and dropout) on the
    resized, normalised images. Raises if a difference exceeds `tol`.
    """
    torch.manual_seed(seed)
    net = random_init_(build_pytorch_fid_inception(1008), seed + 1)
    wrapper = pytorch_fid_feature_model(net)

    mirror = FidInception(div=1, classes=1008, resize=resize)
    theirs = net.state_dict()
    ours = mirror.state_dict()
    assert list(theirs.keys()) == list(ours.keys()), "state_dict names or order differ"
    for k in theirs:
        assert theirs[k].shape == ours[k].shape, (k, theirs[k].shape, ours[k].shape)
    mirror.load_state_dict(theirs, strict=True)

    g = torch.Generator().manual_seed(seed + 2)
    x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    with torch.no_grad():
        ref_pool = wrapper((x + 1) / 2)[0].flatten(1)
        x01 = F.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False)
        ref_logits = net(2 * x01 - 1)
        pool, logits = mirror(x)
    d_pool = (pool - ref_pool).abs().max().item()
    d_logits = (logits - ref_logits).abs().max().item()
    print(f"mirror vs pytorch-fid ({batch} images 3x{size}x{size}, R={resize}, f32): "
          f"max |d pool| = {d_pool:.3e} (pool absmax {ref_pool.abs().max().item():.3f}), "
          f"max |d logits| = {d_logits:.3e} (logits absmax {ref_logits.abs().max().item():.3f}), "
          f"{len(theirs)} state_dict entries, names identical")
    assert d_pool <= tol and d_logits <= tol, "mirror disagrees with pytorch-fid"
    return d_pool, d_logits


if __name__ == "__main__":
    verify_against_pytorch_fid()
