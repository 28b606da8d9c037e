"""Write the tutorial notebooks of docs/tutorials/ (stored without outputs).

Run ``python docs/tutorials/make_notebooks.py`` after editing a cell below: the ``.ipynb``
files are generated from this one source so that they stay output-free and diff-friendly.
``tests/test_notebooks.py`` executes every notebook in a fresh kernel.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# A picture helper every notebook starts with: fcnkit.viz writes PNGs (Agg, atomically),
# IPython shows them; nothing is left behind in the working directory.
SETUP = """\
import tempfile
from pathlib import Path

import numpy as np
from IPython.display import Image, display

from fcnkit.viz import pyplot, save_figure

plt = pyplot()
PICTURES = Path(tempfile.mkdtemp(prefix="fcnkit-tutorial-"))


def show(fig, name):
    \"\"\"Save a matplotlib figure with fcnkit.viz.save_figure and display it.\"\"\"
    path = PICTURES / f"{name}.png"
    save_figure(fig, path)
    display(Image(filename=str(path)))
"""


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


NOTEBOOKS: dict[str, list] = {}

# --------------------------------------------------------------------------------------
NOTEBOOKS["01_transposed_convolution.ipynb"] = [
    md("""
# Transposed convolution as Cᵀ, and the FCN idea

Seed 000 explains the FCN in two steps: a classification network whose fully connected
layers become convolutions keeps *where* things are, and a transposed convolution
("deconvolution") brings the coarse score map back to the image size. The second step
rests on one observation: a convolution is a matrix **C** acting on the flattened input,
and the transposed convolution is multiplication by **Cᵀ**. This notebook builds C with
`fcnkit.arith.conv_matrix` and checks every claim against PyTorch.
"""),
    code(SETUP),
    md("""
## A convolution is a matrix

The seed's example: a 4×4 input `0..15`, a 3×3 kernel `0..8`, stride 1, no padding, so a
2×2 output. `conv_matrix` returns C as a sparse matrix, one row per output pixel and one
column per input pixel.
"""),
    code("""
import torch
import torch.nn.functional as F

from fcnkit.arith import conv2d, conv_matrix, conv_output_size

x = np.arange(16.0).reshape(1, 4, 4)            # (C, H, W)
w = np.arange(9.0).reshape(1, 1, 3, 3)          # (C_out, C_in, kh, kw)
C = conv_matrix((1, 4, 4), w)
print(C.shape, "non-zeros per row:", np.diff(C.indptr))
y = (C @ x.ravel()).reshape(1, 2, 2)
torch_y = F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w))[0].numpy()
print(y[0])
assert C.shape == (4, 16)
assert conv_output_size(4, 3) == 2
assert np.allclose(y, torch_y) and np.allclose(conv2d(x, w), torch_y)
assert y[0].tolist() == [[258.0, 294.0], [402.0, 438.0]]   # the seed's printout, right
"""),
    md("Each row of C is the kernel laid out where the window sits (the seed's \"kernel "
       "unrolled into a row\"):"),
    code("""
fig, ax = plt.subplots(figsize=(7, 2.2))
ax.imshow(C.toarray(), cmap="viridis")
ax.set_xlabel("input pixel (flattened 4×4)")
ax.set_ylabel("output pixel")
ax.set_title("C for a 3×3 kernel on a 4×4 input")
show(fig, "conv_matrix")
"""),
    md("""
## The transposed convolution is Cᵀ

Cᵀ maps the 4 outputs back to 16 positions: the *shape* of the convolution is inverted,
not its values (Cᵀ C is not the identity). PyTorch's `conv_transpose2d` computes exactly
`Cᵀ @ y`; `fcnkit.arith.conv_transpose_via_matrix` does it literally.
"""),
    code("""
from fcnkit.arith import conv_transpose2d, conv_transpose_via_matrix

back = (C.T @ y.ravel()).reshape(1, 4, 4)
torch_back = F.conv_transpose2d(torch.from_numpy(y)[None], torch.from_numpy(w))[0].numpy()
assert np.allclose(back, torch_back)
assert np.allclose(conv_transpose_via_matrix(y, w), torch_back)
assert not np.allclose(back, x)          # shape restored, values not: Cᵀ is no inverse
print(back[0])
"""),
    md("""
## Where the seed is wrong: the stride-2 printout

The seed runs `F.conv_transpose2d` on `[[1, 2], [3, 4]]` with the kernel `[[5, 6], [7, 8]]`
and stride 2, and prints rows starting `5, 10, 6, 12`. Every input unit stamps a scaled
copy of the kernel; with stride 2 (= the kernel size) the copies sit side by side, so the
first row is `5, 6, 10, 12`. PyTorch, the literal Cᵀ product and fcnkit agree:
"""),
    code("""
xs = np.array([[[1.0, 2.0], [3.0, 4.0]]])
ks = np.array([[[[5.0, 6.0], [7.0, 8.0]]]])
seed_printout = [[5, 10, 6, 12], [15, 20, 18, 24], [7, 14, 8, 16], [21, 28, 24, 32]]
up = F.conv_transpose2d(torch.from_numpy(xs)[None], torch.from_numpy(ks), stride=2)[0, 0]
print(up.numpy())
assert up.tolist() == [[5, 6, 10, 12], [7, 8, 14, 16], [15, 18, 20, 24], [21, 24, 28, 32]]
assert up.tolist() != seed_printout
assert np.allclose(conv_transpose2d(xs, ks, stride=2)[0], up.numpy())
C2 = conv_matrix((1, 4, 4), ks, stride=2)
assert np.allclose((C2.T @ xs.ravel()).reshape(4, 4), up.numpy())

fig, axes = plt.subplots(1, 2, figsize=(6, 3))
for ax, data, title in zip(axes, [np.array(seed_printout), up.numpy()],
                           ["seed's printout", "PyTorch / Cᵀ"], strict=True):
    ax.imshow(data, cmap="magma")
    for (i, j), v in np.ndenumerate(data):
        ax.text(j, i, int(v), ha="center", va="center", color="cyan")
    ax.set_title(title)
    ax.axis("off")
show(fig, "stride2")
"""),
    md("The seed's stride-1 examples are right (a 3×3 result, and `[[60]]` with padding 1):"),
    code("""
s1 = F.conv_transpose2d(torch.from_numpy(xs)[None], torch.from_numpy(ks), stride=1)[0, 0]
p1 = F.conv_transpose2d(torch.from_numpy(xs)[None], torch.from_numpy(ks), padding=1)[0, 0]
assert s1.tolist() == [[5, 16, 12], [22, 60, 40], [21, 52, 32]]
assert p1.tolist() == [[60.0]]
"""),
    md("""
## Where the seed is wrong: "a centre crop restores the size exactly"

The seed says the padding of the transposed convolution need not be studied: upsample
too much and centre-crop. For the FCN the crop must *align* the output with the input, and
that offset is computed from the layers (Caffe's `crop` layer). fcnkit's Caffe-faithful
FCN-32s records it as `model.crop_offsets`: 19 at every input size, while a centre crop
of the ×32 output cuts somewhere else (and at 375 px not even on a whole pixel).
"""),
    code("""
from fcnkit.arith import conv_transpose_output_size
from fcnkit.models import build_model

model = build_model("fcn32s", faithful=True, width=0.0625)
offset = model.crop_offsets["final"] if isinstance(model.crop_offsets, dict) else None
print("crop_offsets:", model.crop_offsets)
assert offset == 19
for size in (500, 375, 224):
    # The coarse score map (after the 100-px input padding, Caffe's ceil pools, fc6, fc7).
    with torch.no_grad():
        coarse = model.coarse_scores(torch.zeros(1, 3, size, size))
    up_size = conv_transpose_output_size(coarse.shape[-1], 64, 32)
    centre = (up_size - size) / 2
    print(f"input {size}: upsampled {up_size}, centre crop at {centre}, aligned crop at 19")
    assert centre != offset
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, 40)).shape[-2:] == (size, 40)
"""),
    md("""
## The FCN idea in one picture

Convolutionalised classifier → coarse scores (stride 32) → ×32 transposed convolution
initialised to bilinear interpolation → crop → per-pixel labels. The bilinear kernel that
FCN fixes in its final layer is `fcnkit.arith.bilinear_kernel`; a transposed convolution
with it *is* bilinear upsampling (the seed's "deconvolution is more efficient than
bilinear upsampling" compares a thing with itself: see `docs/models.md`).
"""),
    code("""
from fcnkit.arith import bilinear_kernel, upsampling_recipe

recipe = upsampling_recipe(4)
k = bilinear_kernel(recipe.kernel)
coarse = np.array([[0.0, 1.0], [1.0, 0.0]])
upw = np.zeros((1, 1, recipe.kernel, recipe.kernel))
upw[0, 0] = k
fine = conv_transpose2d(coarse[None], upw, stride=recipe.stride, padding=recipe.padding)[0]
assert fine.shape == (8, 8) and recipe.output_size(2) == 8
# Interior pixels are convex combinations of the coarse values.
assert fine.min() >= 0 and fine.max() <= 1
fig, axes = plt.subplots(1, 3, figsize=(8, 2.6))
for ax, data, title in zip(axes, [coarse, k, fine],
                           ["coarse scores", f"bilinear kernel {recipe.kernel}×{recipe.kernel}",
                            "×4 transposed conv"], strict=True):
    ax.imshow(data, cmap="viridis")
    ax.set_title(title)
    ax.axis("off")
show(fig, "bilinear")
"""),
]

# --------------------------------------------------------------------------------------
NOTEBOOKS["02_conv_arithmetic.ipynb"] = [
    md("""
# Convolution and transposed-convolution arithmetic: PyTorch, Caffe and TensorFlow

Seed 001 compares "convolution" and "deconvolution" and gives the size formulas of Caffe
and TensorFlow, the equivalent padding `P' = k − p − 1`, the output padding `a`, and
fractionally strided convolution. fcnkit's `conv_output_size` and
`conv_transpose_output_size` take a `convention=` argument; each formula below is checked
against PyTorch's layers themselves.
"""),
    code(SETUP),
    md("""
## Direct convolution: `o = floor((i + 2p − d(k−1) − 1) / s) + 1`

PyTorch (and Caffe when the kernel fits) floors. Caffe divides with C++ integer division,
which truncates toward zero, so a kernel that overhangs the padded input by less than a
stride still gives one output. TensorFlow's `SAME` gives `ceil(i / s)` whatever the
kernel, `VALID` gives `ceil((i − d(k−1)) / s)`.
"""),
    code("""
import torch
from torch import nn

from fcnkit.arith import conv_output_size, same_padding

rows = []
for i, k, s, p in [(5, 3, 2, 1), (6, 3, 2, 1), (7, 4, 3, 0), (224, 7, 1, 3), (9, 3, 2, 0)]:
    torch_o = nn.Conv2d(1, 1, k, s, p)(torch.zeros(1, 1, i, i)).shape[-1]
    ours = conv_output_size(i, k, s, p)
    assert ours == torch_o == conv_output_size(i, k, s, p, convention="caffe")
    same = conv_output_size(i, k, s, "same", convention="tensorflow")
    valid = conv_output_size(i, k, s, "valid", convention="tensorflow")
    assert same == -(-i // s) and valid == -(-(i - k + 1) // s)
    rows.append((i, k, s, p, ours, same, valid))
print("i  k  s  p | pytorch/caffe  tf SAME  tf VALID")
for r in rows:
    print("{:<3}{:<3}{:<3}{:<3}| {:<15}{:<9}{}".format(*r))
# TF SAME pads asymmetrically: the odd unit goes after (PyTorch's padding= cannot say it).
assert same_padding(4) == (1, 2)
assert same_padding(3, stride=2, size=6) == (0, 1)
"""),
    md("""
Caffe and PyTorch differ only where PyTorch refuses the layer: an effective kernel larger
than the padded input. There Caffe's truncation yields 1 output:
"""),
    code("""
from fcnkit.errors import InputError

assert conv_output_size(2, 3, 2, 0, convention="caffe") == 1
try:
    conv_output_size(2, 3, 2, 0)
except InputError as exc:
    print("pytorch:", exc)
else:
    raise AssertionError("PyTorch's convention must refuse a kernel larger than the input")
try:
    nn.Conv2d(1, 1, 3, 2)(torch.zeros(1, 1, 2, 2))
except RuntimeError:
    torch_refuses = True
assert torch_refuses
"""),
    md("""
## Transposed convolution: `o = (i − 1)s − 2p + d(k−1) + a + 1`

The transposed layer inverts the *shape* of a direct one. Because the direct
convolution floors, several input sizes map to the same output; the output padding
`a = (i + 2p − d(k−1) − 1) mod s` picks which one comes back (`output_padding_for`).
"""),
    code("""
from fcnkit.arith import conv_transpose_output_size, output_padding_for

for i in (5, 6):
    o = conv_output_size(i, 3, 2, 1)
    a = output_padding_for(o, i, 3, 2, 1)   # transposed input o, target size i
    layer = nn.ConvTranspose2d(1, 1, 3, 2, 1, output_padding=a)
    back = layer(torch.zeros(1, 1, o, o)).shape[-1]
    print(f"i={i} -> o={o} -> transposed with a={a} -> {back}")
    assert back == i == conv_transpose_output_size(o, 3, 2, 1, output_padding=a)
"""),
    md("""
TensorFlow's `conv2d_transpose` / Keras `Conv2DTranspose` infer the shape from the padding
mode: `i·s` for `SAME`, `i·s + max(k − s, 0)` for `VALID`:
"""),
    code("""
for i, k, s in [(4, 3, 2), (7, 5, 3)]:
    same = conv_transpose_output_size(i, k, s, "same", convention="tensorflow")
    valid = conv_transpose_output_size(i, k, s, "valid", convention="tensorflow")
    assert same == i * s and valid == i * s + max(k - s, 0)
    print(i, k, s, "SAME", same, "VALID", valid)
"""),
    md("""
## The equivalent direct convolution: zeros inserted, padding `k − p − 1`, flipped kernel

A transposed convolution equals a stride-1 convolution over the input with `s − 1` zeros
inserted between units, padded by `P' = d(k−1) − p` (the seed's `k − p − 1` for d = 1) on
the top/left and `P' + a` on the bottom/right, with the kernel rotated by 180°
(`transposed_equivalent`). We build that convolution by hand with `zero_insert` and
`conv2d` and compare it with PyTorch.
"""),
    code("""
import torch.nn.functional as F

from fcnkit.arith import conv2d, transposed_equivalent, zero_insert

i, k, s, p = 6, 3, 2, 1
eq = transposed_equivalent(i, k, s, p)
print(eq)
assert eq.padding_before == k - p - 1 and eq.padding_after == k - p - 1 + eq.extra
rng = np.random.default_rng(0)
y = rng.normal(size=(1, eq.output_size, eq.output_size))
w = rng.normal(size=(1, 1, k, k))
stretched = zero_insert(y, s)
padded = np.pad(stretched, ((0, 0), (eq.padding_before, eq.padding_after),
                            (eq.padding_before, eq.padding_after)))
direct = conv2d(padded, w[:, :, ::-1, ::-1])
torch_out = F.conv_transpose2d(torch.from_numpy(y)[None], torch.from_numpy(w), stride=s,
                               padding=p, output_padding=eq.extra)[0].numpy()
assert direct.shape == torch_out.shape == (1, i, i)
assert np.allclose(direct, torch_out)
"""),
    code("""
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, data, title in zip(axes, [y[0], padded[0], torch_out[0]],
                           ["input y (3×3)", "zeros inserted + padded", "output (6×6)"],
                           strict=True):
    ax.imshow(data, cmap="coolwarm")
    ax.set_title(title)
    ax.axis("off")
show(fig, "fractional")
"""),
    md("""
## Convolution is correlation

Deep-learning "convolution" does not flip the kernel: it is cross-correlation. A true
convolution (`fcnkit.arith.convolve2d`, like `scipy.signal.convolve2d`) equals the
correlation with the flipped kernel.
"""),
    code("""
from scipy import signal

from fcnkit.arith import convolve2d, correlate2d

img = rng.normal(size=(6, 7))
ker = rng.normal(size=(3, 2))
torch_corr = F.conv2d(torch.from_numpy(img)[None, None], torch.from_numpy(ker)[None, None])
assert np.allclose(correlate2d(img, ker), torch_corr[0, 0].numpy())
assert np.allclose(convolve2d(img, ker), signal.convolve2d(img, ker, mode="valid"))
assert np.allclose(convolve2d(img, ker), correlate2d(img, ker[::-1, ::-1]))
assert not np.allclose(convolve2d(img, ker), correlate2d(img, ker))
"""),
    md("""
## Where the seed is wrong: TensorFlow's filter layout

Seed 001 describes `tf.nn.conv2d_transpose`'s filter as `[batch, k_width, out_channels,
in_channels]`. TensorFlow's filter is `[height, width, output_channels, in_channels]`
(a filter has no batch axis). PyTorch's `ConvTranspose2d.weight` is
`(in_channels, out_channels / groups, kh, kw)`, i.e. the direct convolution's
`(C_out, C_in, kh, kw)` read the other way round, which is why one array serves both in
`fcnkit.arith`:
"""),
    code("""
layer = nn.ConvTranspose2d(in_channels=4, out_channels=6, kernel_size=(3, 5))
assert tuple(layer.weight.shape) == (4, 6, 3, 5)
tf_layout = tuple(layer.weight.permute(2, 3, 1, 0).shape)   # [height, width, out, in]
print("PyTorch", tuple(layer.weight.shape), "-> TensorFlow", tf_layout)
assert tf_layout == (3, 5, 6, 4)
"""),
    md("""
## Stride-2 convolution vs pooling

Both halve the map with the same size formula; pooling has no weights. fcnkit's
`pool_output_size` also knows `ceil_mode` (Caffe pools with ceil, the reason the faithful
FCN's pool outputs differ from a default `nn.MaxPool2d`):
"""),
    code("""
from fcnkit.arith import pool_output_size

for i in (7, 8, 15):
    floor_o = nn.MaxPool2d(2, 2)(torch.zeros(1, 1, i, i)).shape[-1]
    ceil_o = nn.MaxPool2d(2, 2, ceil_mode=True)(torch.zeros(1, 1, i, i)).shape[-1]
    assert pool_output_size(i, 2, 2) == floor_o == conv_output_size(i, 2, 2)
    assert pool_output_size(i, 2, 2, ceil_mode=True) == ceil_o
    print(i, "floor", floor_o, "ceil", ceil_o)
"""),
]

# --------------------------------------------------------------------------------------
NOTEBOOKS["03_d2l_fcn.ipynb"] = [
    md("""
# The d2l FCN on the embedded synthetic data

Seed 002 follows *Dive into Deep Learning* §14.11: a ResNet-18 body without its pooling
and classifier, a 1×1 convolution to the class count, and a `ConvTranspose2d(k=64, s=32,
p=16)` initialised to bilinear interpolation. fcnkit's `fcn_resnet18_d2l` is that network
layer for layer. Instead of Pascal VOC (a download) we train on fcnkit's embedded
synthetic data, tiny: 4 images of 64×64 for 2 epochs, enough to see the loss move.
"""),
    code(SETUP),
    code("""
import torch
from torch import nn

from fcnkit.arith import conv_transpose_output_size, upsampling_recipe
from fcnkit.data.synthetic import SYNTHETIC_CLASSES, render_synthetic_sample
from fcnkit.models import build_model

torch.manual_seed(0)
torch.set_num_threads(2)
num_classes = len(SYNTHETIC_CLASSES)
net = build_model("fcn_resnet18_d2l", num_classes=num_classes)
print(net.transpose_conv)
recipe = upsampling_recipe(32)
assert (recipe.kernel, recipe.stride, recipe.padding) == (64, 32, 16)
assert net.transpose_conv.kernel_size == (64, 64) and net.transpose_conv.stride == (32, 32)
"""),
    md("""
## The ×32 layer returns 32·n, not every size

`(n − 1)·32 − 2·16 + 64 = 32·n`: a 320×480 image (d2l's crop) comes back as 320×480, but
for a size that is not a multiple of 32 the body gives `ceil(H/32)` rows and the layer
returns more than H. d2l only feeds multiples of 32; fcnkit crops the rest.
"""),
    code("""
for h in (320, 64, 70, 100):
    body = -(-h // 32)       # ResNet-18's five stride-2 stages with padding: ceil(H / 32)
    raw = conv_transpose_output_size(body, 64, 32, 16)
    print(f"H={h}: body {body} rows, transposed conv gives {raw}")
    assert raw == 32 * body
with torch.no_grad():
    scores = net.coarse_scores(torch.zeros(1, 3, 70, 100))
    raw = net.transpose_conv(scores)
    out = net(torch.zeros(1, 3, 70, 100))
assert tuple(raw.shape[-2:]) == (96, 128)      # the seed's layer alone: not the input size
assert tuple(out.shape[-2:]) == (70, 100)      # fcnkit crops to the input
print("grid shift recorded by the arithmetic:", net.misalignment)
assert net.misalignment["final"] == 15.5
"""),
    md("## The data: a few synthetic images"),
    code("""
from fcnkit.data import colorize

samples = [render_synthetic_sample(seed=0, split="train", index=i, size=(64, 64))
           for i in range(4)]
images = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im, _, _ in samples])
masks = torch.stack([torch.from_numpy(m.astype(np.int64)) for _, m, _ in samples])
assert images.shape == (4, 3, 64, 64) and masks.shape == (4, 64, 64)
assert set(masks.unique().tolist()) <= set(range(num_classes)) | {255}
fig, axes = plt.subplots(2, 4, figsize=(10, 3.2))
for j in range(4):
    axes[0, j].imshow(samples[j][0])
    axes[1, j].imshow(colorize(samples[j][1]))
    axes[0, j].axis("off")
    axes[1, j].axis("off")
show(fig, "samples")
"""),
    md("""
## Two epochs

d2l's loss: per-pixel cross-entropy (here with 255 = void ignored). The bilinear
initialisation means the very first prediction is already a smooth upsampling of the
1×1-convolution scores.
"""),
    code("""
import time

from fcnkit.models import IMAGENET_MEAN, IMAGENET_STD

mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
inputs = (images - mean) / std
loss_fn = nn.CrossEntropyLoss(ignore_index=255)
optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
losses = []
start = time.perf_counter()
net.train()
for _epoch in range(2):
    logits = net(inputs)                 # one batch of the 4 images per epoch
    loss = loss_fn(logits, masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print("losses:", [round(v, 3) for v in losses], f"({time.perf_counter() - start:.1f} s)")
assert all(np.isfinite(losses))
assert losses[1] < losses[0]
"""),
    md("## Prediction\n\nArgmax over classes, shown with `fcnkit.viz.predictions`:"),
    code("""
from fcnkit.viz.predictions import pixel_accuracy, prediction_panels

net.eval()
with torch.no_grad():
    pred = net(inputs[:1]).argmax(1)[0]
assert pred.shape == masks[0].shape
panels = prediction_panels(images[0], masks[0], pred, palette=None)
acc = pixel_accuracy(masks[0], pred)
print(f"pixel accuracy after 2 tiny epochs: {acc:.3f}")
assert 0.0 <= acc <= 1.0
fig, axes = plt.subplots(1, 4, figsize=(10, 2))
for ax, (name, panel) in zip(axes, panels.items(), strict=True):
    ax.imshow(panel)
    ax.set_title(name)
    ax.axis("off")
show(fig, "prediction")
"""),
    md("""
For a real run use the CLI: `fcnkit train --model fcn_resnet18_d2l --data synthetic ...`
(see `docs/workflow.md`).
"""),
]

# --------------------------------------------------------------------------------------
NOTEBOOKS["04_dilated_gridding_hdc.ipynb"] = [
    md("""
# Dilated convolution, gridding and HDC

Seed 003 explains dilated (atrous) convolution: the effective kernel `d(k−1)+1`, the
output size, the receptive field's growth, the gridding effect of equal rates, and the
rules of Hybrid Dilated Convolution (Wang et al., 2018): a common factor of 1,
`M_2 ≤ K`, and sawtooth rates such as `[1, 2, 3, 1, 2, 3]`. fcnkit computes the exact
coverage of a dilated stack (`dilation_coverage`, `hdc_check`) so that each rule can be
checked against the real answer.
"""),
    code(SETUP),
    md("## Effective kernel and output size"),
    code("""
import torch
from torch import nn

from fcnkit.arith import conv_output_size, effective_kernel

for d in (1, 2, 3, 5):
    k_eff = effective_kernel(3, d)
    torch_o = nn.Conv2d(1, 1, 3, dilation=d)(torch.zeros(1, 1, 32, 32)).shape[-1]
    assert k_eff == 2 * d + 1
    assert conv_output_size(32, 3, dilation=d) == torch_o == 32 - k_eff + 1
    # padding = d keeps the size: HDC/DeepLab's layers.
    assert conv_output_size(32, 3, padding=d, dilation=d) == 32
    print(f"d={d}: effective kernel {k_eff}, output {torch_o} of 32")
"""),
    md("""
## Receptive-field growth

Stacking three 3×3 layers: with rate 1 the receptive field grows by 2 per layer, with
rates 1, 2, 4 by `2d` per layer. `fcnkit.arith.receptive_field` gives the numbers; we
check them by back-propagating a single output's gradient through real PyTorch layers.
"""),
    code("""
from fcnkit.arith import receptive_field


def measured_rf(rates):
    layers = [nn.Conv2d(1, 1, 3, padding=r, dilation=r, bias=False) for r in rates]
    for layer in layers:
        nn.init.constant_(layer.weight, 1.0)
    x = torch.zeros(1, 1, 65, 65, requires_grad=True)
    y = nn.Sequential(*layers)(x)
    y[0, 0, 32, 32].backward()
    cols = (x.grad[0, 0].abs().sum(0) > 0).nonzero()
    return int(cols.max() - cols.min() + 1)


for rates in ([1, 1, 1], [1, 2, 4], [2, 2, 2]):
    rf = receptive_field([(3, 1, r, r) for r in rates])[-1].size
    assert rf == 1 + 2 * sum(rates) == measured_rf(rates)
    print(rates, "receptive field", rf)
"""),
    md("""
## Gridding

Equal rates reach only a lattice: with `[2, 2, 2]` a top pixel never sees the odd input
pixels inside its 13×13 field. `hdc_check(rates).coverage` counts the paths from each input
pixel to one output pixel; 0 is a hole. We compare it with the gradient of PyTorch's layers.
"""),
    code("""
from fcnkit.arith import dilation_coverage, hdc_check
from fcnkit.viz.gridding import plot_dilation_coverage


def measured_coverage(rates):
    layers = [nn.Conv2d(1, 1, 3, padding=r, dilation=r, bias=False) for r in rates]
    for layer in layers:
        nn.init.constant_(layer.weight, 1.0)
    side = 1 + 2 * sum(rates)
    x = torch.zeros(1, 1, 2 * side + 1, 2 * side + 1, dtype=torch.float64, requires_grad=True)
    y = nn.Sequential(*[layer.double() for layer in layers])(x)
    y[0, 0, side, side].backward()
    c = side // 2
    return x.grad[0, 0, side - c:side + c + 1, side - c:side + c + 1].numpy()


for rates in ([2, 2, 2], [1, 2, 5]):
    report = hdc_check(rates)
    assert np.array_equal(report.coverage, measured_coverage(rates))
    assert np.array_equal(dilation_coverage(rates), report.coverage)
    print(rates, "holes:", report.holes, "grids:", report.grids)
    path = PICTURES / f"coverage_{'_'.join(map(str, rates))}.png"
    plot_dilation_coverage(report.coverage, path, title=f"rates {rates}")
    display(Image(filename=str(path)))
assert hdc_check([2, 2, 2]).grids and not hdc_check([1, 2, 5]).grids
"""),
    md("""
## The HDC rules, checked against the coverage

* A common factor > 1 always grids (`[2, 4, 8]`, the seed's example).
* `[1, 2, 5]` satisfies `M_2 ≤ K` and has no hole; `[1, 2, 9]` has `M_2 = 5 > 3` and holes.
"""),
    code("""
r248, r125, r129 = hdc_check([2, 4, 8]), hdc_check([1, 2, 5]), hdc_check([1, 2, 9])
assert r248.common_factor == 2 and r248.grids
assert r125.M == [1, 2, 5] and r125.m_rule_ok and not r125.grids
assert r129.M == [3, 5, 9] and not r129.m_rule_ok and r129.grids
print("[1, 2, 9]: holes per axis", r129.holes_1d)
"""),
    md("""
## Where the seed is wrong: `M_2 ≤ K` is not sufficient

The seed presents `M_2 ≤ K` as the condition that removes gridding. It is a design goal
of the paper, not a guarantee: `[2, 3]` satisfies it (`M_2 = 3`) and still grids, because
the first layer's rate is 2 and no later layer fills its gaps. `[1, …]` starts are what
makes the rule work; fcnkit's verdict comes from the coverage itself.
"""),
    code("""
r23 = hdc_check([2, 3])
print("M:", r23.M, "m_rule_ok:", r23.m_rule_ok, "holes:", r23.holes)
assert r23.m_rule_ok and r23.grids
assert measured_coverage([2, 3]).min() == 0        # PyTorch agrees: a hole
"""),
    md("""
## Sawtooth schedules

`fcnkit.arith.hdc_schedule` / `suggest_rates` produce hole-free rising groups; the
seed's `[1, 2, 3, 1, 2, 3]` is one of them:
"""),
    code("""
from fcnkit.arith import suggest_rates

saw = hdc_check([1, 2, 3, 1, 2, 3])
assert not saw.grids and saw.receptive_field == 1 + 2 * 12
suggestions = suggest_rates(4, 25)
print([s.rates for s in suggestions[:3]])
assert all(not hdc_check(s.rates).grids and s.receptive_field >= 25 for s in suggestions)
"""),
]

# --------------------------------------------------------------------------------------
NOTEBOOKS["05_fcn_vgg16.ipynb"] = [
    md("""
# FCN-32s, 16s and 8s on VGG16: from convolutionalisation to prediction

Seed 004 turns VGG16's fully connected layers into convolutions, adds skip connections
from pool4 and pool3, and sketches training. fcnkit builds the three models with
`build_model("fcn32s" | "fcn16s" | "fcn8s")`. To stay within a minute on two cores this
notebook uses `width=1/16` (every VGG16 channel count divided by 16: the same geometry)
and small inputs.
"""),
    code(SETUP),
    md("""
## Convolutionalisation

A Linear layer that reads a 7×7×C map is a 7×7 convolution with the same weights; the
later Linear layers are 1×1 convolutions. On the classifier's native input the
convolutional net gives a 1×1 map equal to the classifier's logits; on a larger input it
gives a map of class scores. `fcnkit.models.convolutionalize` does this to any VGG-style
module (`features`, `avgpool`, `classifier`); a small one keeps it fast:
"""),
    code("""
import torch
from torch import nn

from fcnkit.models import convolutionalize

torch.manual_seed(0)
torch.set_num_threads(2)
layers, c = [], 3
for width in (4, 8, 8, 8, 8):
    layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    c = width
classifier_net = nn.Module()
classifier_net.features = nn.Sequential(*layers)
classifier_net.avgpool = nn.AdaptiveAvgPool2d(7)
classifier_net.classifier = nn.Sequential(
    nn.Linear(8 * 7 * 7, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, 32), nn.ReLU(),
    nn.Dropout(), nn.Linear(32, 10))
classifier_net.eval()
fcn_like = convolutionalize(classifier_net).eval()
print(fcn_like[-7:])
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    logits = classifier_net.classifier(torch.flatten(classifier_net.avgpool(
        classifier_net.features(x)), 1))
    dense = fcn_like(x)
    bigger = fcn_like(torch.randn(1, 3, 320, 320))
assert dense.shape == (1, 10, 1, 1)
assert torch.allclose(dense.flatten(), logits.flatten(), atol=1e-5)
assert bigger.shape == (1, 10, 4, 4)        # 320 / 32 = 10, minus the 7×7 kernel: 4
"""),
    md("""
## Where the seed is wrong: "set fc6's kernel to 1"

Seed 004 advises changing fc6's kernel from 7 to 1 to get a 7×7 score map from a 224×224
input. That is a different network: the 25088 → 4096 weights no longer fit (they reshape
into a 7×7 kernel only) and the receptive field shrinks. The FCN keeps the 7×7 fc6 and
pads (by 100 px at the input, `faithful=True`, or fc6 by 3, `faithful=False`).
"""),
    code("""
from fcnkit.arith import receptive_field

vgg_pool5 = []
for n_convs in (2, 2, 3, 3, 3):
    vgg_pool5 += [(3, 1, 1)] * n_convs + [(2, 2, 0)]
rf_pool5 = receptive_field(vgg_pool5)[-1].size
rf_fc6_7x7 = receptive_field(vgg_pool5 + [(7, 1, 0)])[-1].size
rf_fc6_1x1 = receptive_field(vgg_pool5 + [(1, 1, 0)])[-1].size
print("pool5", rf_pool5, "fc6 7×7", rf_fc6_7x7, "fc6 1×1", rf_fc6_1x1)
assert (rf_pool5, rf_fc6_7x7, rf_fc6_1x1) == (212, 404, 212)
linear = nn.Linear(512 * 7 * 7, 8)   # 8 outputs instead of 4096: the same shapes matter
assert linear.weight.view(8, 512, 7, 7).shape == (8, 512, 7, 7)
try:
    linear.weight.view(8, 512, 1, 1)
except RuntimeError as exc:
    print("a 1×1 fc6 cannot take the classifier's weights:", str(exc)[:60], "...")
"""),
    md("""
## FCN-32s, 16s and 8s

Each returns logits of the input's size for any input size; the skip layers score pool4
and pool3 *themselves* (their 512/256 channels) and are fused at stride 16 and 8 with
crops computed by `fcnkit.arith` (`model.crop_offsets`).
"""),
    code("""
from fcnkit.models import build_model

models = {name: build_model(name, num_classes=5, width=0.0625, faithful=True).eval()
          for name in ("fcn32s", "fcn16s", "fcn8s")}
for name, model in models.items():
    with torch.no_grad():
        out = model(torch.randn(1, 3, 70, 90))
    print(name, tuple(out.shape), "crop offsets", model.crop_offsets)
    assert out.shape == (1, 5, 70, 90)
assert models["fcn32s"].crop_offsets["final"] == 19
assert models["fcn16s"].crop_offsets["score_pool4"] == 5
assert models["fcn8s"].crop_offsets["score_pool3"] == 9
"""),
    md("""
## Where the seed is wrong: fusing 2×2 with 14×14

Seed 004's Paddle model applies fc6 as an unpadded 7×7 convolution to the 7×7 pool5 map
of a 224×224 image (a 1×1 map) and then adds it to the ×2-upsampled pool4 scores: 2×2
against 14×14, which cannot be added. Its PyTorch sketch applies the 256- and 128-channel
score layers to the 21-channel upsampled scores instead of pool4/pool3. The arithmetic:
"""),
    code("""
from fcnkit.arith import conv_output_size, conv_transpose_output_size

pool5, pool4 = 224 // 32, 224 // 16
fc6_unpadded = conv_output_size(pool5, 7)
up2 = conv_transpose_output_size(fc6_unpadded, 4, 2)
print(f"seed: fc6 {fc6_unpadded}×{fc6_unpadded}, ×2 -> {up2}×{up2}, pool4 {pool4}×{pool4}")
assert (fc6_unpadded, up2, pool4) == (1, 4, 14)
assert up2 != pool4
# The seed's "FCN-32s" output: the 1×1 map upsampled ×32 is 32×32, not 224×224.
assert fc6_unpadded * 32 == 32
"""),
    md("""
## A few training steps and a prediction

FCN-8s (width 1/16) on four synthetic images of 64×64, a handful of SGD steps: the loss
falls and the prediction has the input's size.
"""),
    code("""
from fcnkit.data import colorize
from fcnkit.data.synthetic import SYNTHETIC_CLASSES, render_synthetic_sample

num_classes = len(SYNTHETIC_CLASSES)
fcn8s = build_model("fcn8s", num_classes=num_classes, width=0.0625)
samples = [render_synthetic_sample(1, "train", i, size=(64, 64)) for i in range(4)]
images = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im, _, _ in samples])
masks = torch.stack([torch.from_numpy(m.astype(np.int64)) for _, m, _ in samples])
loss_fn = nn.CrossEntropyLoss(ignore_index=255)
opt = torch.optim.Adam(fcn8s.parameters(), lr=1e-3)
losses = []
fcn8s.train()
for _ in range(6):
    loss = loss_fn(fcn8s(images - 0.5), masks)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
print([round(v, 3) for v in losses])
assert losses[-1] < losses[0]
fcn8s.eval()
with torch.no_grad():
    pred = fcn8s(images[:1] - 0.5).argmax(1)[0]
assert pred.shape == (64, 64)
fig, axes = plt.subplots(1, 3, figsize=(7, 2.4))
for ax, data, title in zip(axes, [samples[0][0], colorize(samples[0][1]),
                                  colorize(pred.numpy().astype(np.uint8))],
                           ["image", "truth", "FCN-8s (6 steps)"], strict=True):
    ax.imshow(data)
    ax.set_title(title)
    ax.axis("off")
show(fig, "fcn8s")
"""),
]


# --------------------------------------------------------------------------------------
NOTEBOOKS["06_your_own_data.ipynb"] = [
    md("""
# Your own images and masks: train, evaluate, predict, export

The other notebooks explain the arithmetic and the models; this one is the workflow, in
Python, on a folder of images and masks as you would bring them: JPEG photos, PNG masks
whose pixel values are class indices (255 = void), and a `classes.txt`. The folder is made
here from fcnkit's synthetic shapes so the notebook runs anywhere, in well under a minute
on two cores; point `DATA` at your own folder instead. Every step is the function the
command line calls (`fcnkit train / eval / predict / export`), so a result here is the
same as there.
"""),
    code(SETUP),
    md("""
## The folder

`folder:ROOT` reads `images/<split>/<stem>.jpg` and `masks/<split>/<stem>.png` (same
stem), and `classes.txt` with one class name per line (docs/datasets.md). Pixels of value
255 are void: ignored by the loss and the metrics.
"""),
    code("""
from PIL import Image as PILImage

from fcnkit.data.synthetic import SYNTHETIC_CLASSES, render_synthetic_sample

root = Path(tempfile.mkdtemp(prefix="fcnkit-my-data-")) / "my_data"
for split, count in (("train", 40), ("val", 10)):
    (root / "images" / split).mkdir(parents=True)
    (root / "masks" / split).mkdir(parents=True)
    for i in range(count):
        image, mask, _ = render_synthetic_sample(seed=7, split=split, index=i, size=(80, 112))
        PILImage.fromarray(image).save(root / "images" / split / f"photo_{i:03d}.jpg",
                                       quality=92)
        PILImage.fromarray(mask).save(root / "masks" / split / f"photo_{i:03d}.png")
(root / "classes.txt").write_text("".join(f"{name}\\n" for name in SYNTHETIC_CLASSES))
DATA = f"folder:{root}"
print(DATA)
"""),
    md("""
`open_dataset` opens a split; `dataset_summary` reads every mask once and counts the
pixels of each class (what `fcnkit data summary` prints). Look at it before training: a
class with almost no pixels, or a mask value that is not a class, shows up here.
"""),
    code("""
from fcnkit.data import open_dataset
from fcnkit.data.dataset import dataset_summary

summary = dataset_summary(open_dataset(DATA, "val"))
for name, share in zip(summary["classes"], summary["fraction"], strict=True):
    print(f"{name:10s} {100 * share:5.1f} % of the labelled pixels")
print(f"void: {100 * summary['void_fraction']:.1f} % of all pixels")
assert summary["images"] == 10 and summary["classes"] == SYNTHETIC_CLASSES
assert abs(sum(summary["fraction"]) - 1) < 1e-9
"""),
    md("""
## Training

`TrainConfig` holds what `fcnkit train` takes as flags; `train` writes the run directory
(`best.pt`, `last.pt`, `metrics.jsonl`, `curves.png`) and returns a summary. FCN-8s on a
ResNet-18 at a quarter of its width, from scratch (`backbone_weights=` takes ImageNet
weights you have on disk), ten short epochs. `precision="fp32"`: the comparisons below are
exact.
"""),
    code("""
import torch

from fcnkit.training.config import TrainConfig
from fcnkit.training.loop import train

torch.set_num_threads(2)
run_dir = root.parent / "run"
config = TrainConfig(data=DATA, model="fcn8s", backbone="resnet18", width=0.25, epochs=10,
                     batch_size=8, crop=(80, 112), optimizer="adamw", lr=3e-3, workers=0,
                     precision="fp32", progress=False, out=str(run_dir))
result = train(config)
print(f"best val mIoU {result['best_miou']:.3f} after {result['epoch']} epochs "
      f"({result['time_s']:.0f} s)")
# The floor: every pixel called background gives background's IoU over the class count.
constant = summary["fraction"][0] / len(SYNTHETIC_CLASSES)
print(f"best constant class: mIoU {constant:.3f}")
assert result["best_miou"] > 2 * constant
display(Image(filename=str(run_dir / "curves.png")))
"""),
    md("""
## Evaluation

`evaluate_checkpoint` is `fcnkit eval`: per-class IoU, pixel accuracy, mean accuracy,
mIoU and frequency-weighted IoU over the split. On the validation split it reproduces the
number training recorded for `best.pt`, to the last digit: the same images, the same
model, the same confusion matrix.
"""),
    code("""
from fcnkit.inference.evaluate import evaluate_checkpoint

metrics = evaluate_checkpoint(run_dir, DATA, split="val")
for name, iou in zip(metrics["classes"], metrics["iou"], strict=True):
    print(f"{name:10s} IoU {iou:.3f}")
print({k: round(metrics[k], 4) for k in ("pixel_acc", "mean_acc", "miou", "fwiou")})
assert abs(metrics["miou"] - result["best_miou"]) < 1e-9
"""),
    md("""
## Prediction

`predict_checkpoint` is `fcnkit predict`: one PNG of class indices per image (with the
classes' palette) and, with `overlay=True`, the colours blended over the photo.
"""),
    code("""
from fcnkit.inference.predict import predict_checkpoint

predictions = predict_checkpoint(run_dir, [root / "images" / "val"], root.parent / "pred",
                                 overlay=True)
first = predictions["outputs"][0]
print(first["mask"], first["size"], first["class_fractions"])
labels = np.asarray(PILImage.open(first["mask"]))
assert predictions["num_images"] == 10 and labels.shape == (80, 112)
assert labels.max() < len(SYNTHETIC_CLASSES)
fig, axes = plt.subplots(1, 3, figsize=(9, 2.4))
for ax, output in zip(axes, predictions["outputs"][:3], strict=True):
    ax.imshow(PILImage.open(output["overlay"]))
    ax.set_title(Path(output["input"]).name)
    ax.axis("off")
show(fig, "overlays")
"""),
    md("""
## Export

`export_checkpoint` is `fcnkit export`: here an ONNX file that is right at every input
size (`dynamic=True`). Evaluated by onnxruntime (an `.onnx` file picks it by itself), it
gives the PyTorch model's metrics. Without the `onnx` extra (`pip install
'fcnkit[onnx]'`) this cell says so and stops there.
"""),
    code("""
import importlib.util

if importlib.util.find_spec("onnxruntime") is None:
    print("onnxruntime is not installed: pip install 'fcnkit[onnx]'")
else:
    from fcnkit.inference.export import export_checkpoint

    onnx_file = root.parent / "model.onnx"
    export_checkpoint(run_dir, onnx_file, dynamic=True)
    on_ort = evaluate_checkpoint(onnx_file, DATA, split="val")
    print(on_ort["backend"], f"mIoU {on_ort['miou']:.4f} (PyTorch {metrics['miou']:.4f})")
    assert abs(on_ort["miou"] - metrics["miou"]) < 0.005
"""),
    md("""
The same steps on the command line: `fcnkit train --data folder:ROOT ...`, `fcnkit eval`,
`fcnkit predict`, `fcnkit export` (docs/workflow.md, docs/export.md).
"""),
]


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        # Stable cell ids: regenerating an unchanged notebook gives the same bytes.
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"cell-{i:02d}"
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    main()
