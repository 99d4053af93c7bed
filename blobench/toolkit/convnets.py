"""Convolutional networks of the image bilevel problems, as
:class:`~blobench.toolkit.flatmodel.FlatModel`s.

Two backbones, one builder (:func:`convnet`): ``depth`` blocks of

    conv 3×3 (padding 1, ``width`` channels) → norm → ReLU → 2×2 pooling

then a linear classifier on the flattened features (or no classifier: ``n_classes=0`` gives
the feature extractor of a hyper-representation problem).

- **ConvNet-3** (:func:`convnet3`): the ConvNet of dataset distillation / condensation
  (Zhao, Mopuri & Bilen 2021; DC-BENCH, Cui et al. 2022): depth 3, width 128, *instance*
  normalization with an affine map (``GroupNorm(width, width)``), *average* pooling. On
  28×28 grey images: 28 → 14 → 7 → 3, 1,152 features, 308,746 weights with 10 classes; on
  32×32 colour images 320,010 weights.
- **Conv-4** (:func:`conv4`): the few-shot backbone (Vinyals et al. 2016; Finn et al. 2017
  MAML §5.2; Snell et al. 2017): depth 4, width 64 (MAML: 64 on Omniglot, 32 on
  miniImageNet), *batch* normalization on the batch's own statistics (no running averages,
  as MAML's reference implementation: each task is normalized by its own support / query
  batch — well defined under ``torch.func.vmap``), *max* pooling. On 28×28: 28 → 14 → 7 →
  3 → 1, 64 features.

Weights are a flat vector (``FlatModel``), drawn by ``FlatModel.init`` (PyTorch's default
uniform ±1/√fan_in for conv and linear layers, norms at scale 1 / shift 0).

:func:`images` maps uint8 image tensors (n × H × W or n × C × H × W) to float
(n × C × H × W), standardized by given per-channel statistics; :func:`scores` is the
cross-entropy and accuracy of a flat classifier on a labelled set, in chunks (no graph);
:func:`chunked_sum` / :func:`mean_cross_entropy` a differentiable full-batch loss in
checkpointed chunks (at full size a 10,000-image batch through ConvNet-3 would hold ≈ 40 GB
of activations).
:class:`NetworkInner` is the mixin of problems whose θ is the flat weights of ``self.model``.
:func:`task_forward` is ``torch.func.vmap(model)(W, x)`` — one weight vector per task, each on
its own batch — as one grouped convolution per layer (tasks folded into channels, so batch
norm on the batch's own statistics is per task): the same numbers, 40 % less time for a
Conv-4 few-shot evaluation at quick (issue 15: vmap's batching rules copy between layouts
and take max pooling's with-indices path).

Flat vector vs parameter dict: ``FlatModel`` splits θ into views (no copy), so the only
extra cost per call is the concatenation of the gradient — O(dim θ) against the
O(batch · width² · pixels) convolutions. Measured on ConvNet-3 (308,746 weights, 100 images
28×28, forward + backward, CPU float32): 2.3 / 2.6 s flat vs 1.9 / 3.1 s with a dict of
leaf tensors (two alternating rounds on a loaded 2-core machine — the difference is inside
the noise), so the flat-vector API is kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from blobench.toolkit.flatmodel import FlatModel

NORMS = ("instance", "batch", "none")
#: examples per chunk of a full-batch loss (:func:`chunked_sum`): ConvNet-3 activations of 500
#: 28×28 images are ≈ 200 MB per layer in float32
CHUNK = 500
POOLS = ("avg", "max")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")


def feature_size(image_size: int, depth: int) -> int:
    """Side of the feature map after ``depth`` 2×2 poolings (floor division, as PyTorch)."""
    for _ in range(depth):
        image_size //= 2
    return image_size


def convnet(in_channels: int, image_size: int, n_classes: int, width: int, depth: int,
            norm: str = "instance", pool: str = "avg") -> nn.Sequential:
    """The module of the module docstring (``n_classes = 0``: features only)."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; valid: {', '.join(POOLS)}")
    side = feature_size(image_size, depth)
    if side < 1:
        raise ValueError(f"{depth} poolings leave nothing of a {image_size}×{image_size} image")
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), _norm(norm, width), nn.ReLU(),
                   nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2)]
        channels = width
    layers.append(nn.Flatten())
    if n_classes:
        layers.append(nn.Linear(width * side * side, n_classes))
    return nn.Sequential(*layers)


def convnet3(in_channels: int, image_size: int, n_classes: int, width: int = 128,
             depth: int = 3) -> FlatModel:
    """DC-BENCH's ConvNet (instance norm, average pooling) as a flat model."""
    return FlatModel(convnet(in_channels, image_size, n_classes, width, depth, "instance",
                             "avg"))


def conv4(in_channels: int, image_size: int, n_classes: int, width: int = 64,
          depth: int = 4) -> FlatModel:
    """The few-shot Conv-4 (batch statistics, max pooling) as a flat model; ``n_classes =
    0``: the feature extractor (``width · side²`` features)."""
    return FlatModel(convnet(in_channels, image_size, n_classes, width, depth, "batch", "max"))


def n_features(in_channels: int, image_size: int, width: int, depth: int) -> int:
    """Length of the feature vector of a classifier-less :func:`convnet`."""
    return width * feature_size(image_size, depth) ** 2


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of uint8 images (on pixels / 255)."""
    x = images(x, torch.float64)
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def images(x: torch.Tensor, dtype: torch.dtype, device: torch.device | str = "cpu",
           stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 images (n × H × W grey, or n × C × H × W) → float n × C × H × W: pixels / 255,
    then (x − mean) / std per channel when ``stats`` (from :func:`channel_stats`) is given."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    out = x.to(torch.float64) / 255.0
    if stats is not None:
        mean, std = stats
        out = (out - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return out.to(dtype).to(device)


def scores(model: FlatModel, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
           chunk: int = CHUNK) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the classifier ``model`` with weights ``w`` on
    (x, y), evaluated ``chunk`` examples at a time without a graph."""
    loss, correct = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, x.shape[0], chunk):
            logits = model(w, x[start:start + chunk])
            target = y[start:start + chunk]
            loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += float((logits.argmax(-1) == target).sum())
    return loss / x.shape[0], correct / x.shape[0]


def chunked_sum(fn: Callable[..., torch.Tensor], params: tuple[torch.Tensor, ...],
                data: tuple[torch.Tensor, ...], chunk: int = CHUNK) -> torch.Tensor:
    """Σ_c fn(*params, *data[c]) over row-chunks c of ``chunk`` examples: a full-batch loss
    whose memory is one chunk's activations. With autograd on, each chunk is checkpointed
    (``torch.utils.checkpoint``, non-reentrant: recomputed in the backward pass; first and
    second derivatives are those of the unchunked sum); without it, plain chunks."""
    n = data[0].shape[0]
    if n <= chunk:
        return fn(*params, *data)
    total = None
    for start in range(0, n, chunk):
        part = tuple(d[start:start + chunk] for d in data)
        value = (checkpoint(fn, *params, *part, use_reentrant=False)
                 if torch.is_grad_enabled() else fn(*params, *part))
        total = value if total is None else total + value
    return total


def mean_cross_entropy(model: FlatModel, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                       chunk: int = CHUNK) -> torch.Tensor:
    """Mean cross-entropy of the classifier on (x, y), by :func:`chunked_sum`."""

    def total(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(w, x), y, reduction="sum")

    return chunked_sum(total, (w,), (x, y), chunk) / x.shape[0]


class NetworkInner:
    """Mixin of problems whose θ is the weights of the classifier ``self.model`` (set in
    ``build`` with ``self.dtype``, ``self.lam0``, ``self.x_test`` / ``self.y_test`` and an
    ``inner_lr`` parameter): λ₀ = ``self.lam0``, θ₀ = a fresh draw of the model's default
    initialization from the generator (the cell's θ₀ generator), step size ``inner_lr``, and
    the held-out scores of θ."""

    def init_outer(self, generator: torch.Generator) -> torch.Tensor:
        return self.lam0.clone()

    def init_inner(self, lam: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.model.init(generator, self.dtype, self.device)

    def inner_step_size(self, lam: torch.Tensor) -> float:
        return self.config["inner_lr"]

    def test_scores(self, theta: torch.Tensor) -> dict[str, float]:
        """``test_accuracy`` and ``test_loss`` of the classifier with weights θ."""
        loss, accuracy = scores(self.model, theta, self.x_test, self.y_test)
        return {"test_accuracy": accuracy, "test_loss": loss}


def task_forward(model: FlatModel, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``torch.func.vmap(model)(weights, x)`` for a :func:`convnet` (T tasks: ``weights`` is
    T × ``model.numel``, ``x`` is T × N × C × H × W; returns T × N × outputs), computed with
    the T tasks folded into the channels: conv layers as one convolution with ``groups=T``,
    norms per (task, channel) — batch norm over the task's own N images, instance norm per
    image — pooling and ReLU unchanged, the classifier as a batched matrix product.
    Differentiable in ``weights`` (and ``x``). Modules other than those :func:`convnet`
    builds (with ``groups=1`` convolutions, affine norms) raise ``ValueError``."""
    t, n = x.shape[:2]
    given = dict(zip(model.names, torch.split(weights, model.numels, dim=1), strict=True))
    params = {name: w.reshape(t, *shape)
              for (name, w), shape in zip(given.items(), model.shapes, strict=True)}
    h = x.transpose(0, 1).reshape(n, t * x.shape[2], *x.shape[3:])  # N × (T·C) × H × W
    folded = True
    for name, layer in model.module.named_children():
        w, b = params.get(f"{name}.weight"), params.get(f"{name}.bias")
        flat_w = None if w is None else w.reshape(-1, *w.shape[2:])
        flat_b = None if b is None else b.reshape(-1)
        if isinstance(layer, nn.Conv2d) and layer.groups == 1 and folded:
            h = nn.functional.conv2d(h, flat_w, flat_b, layer.stride, layer.padding,
                                     layer.dilation, groups=t)
        elif (isinstance(layer, nn.BatchNorm2d) and not layer.track_running_stats
              and layer.affine and folded):
            h = nn.functional.batch_norm(h, None, None, flat_w, flat_b, True, 0.0, layer.eps)
        elif (isinstance(layer, nn.GroupNorm) and layer.num_groups == layer.num_channels
              and layer.affine and folded):  # instance norm: per image and channel
            h = nn.functional.group_norm(h, t * layer.num_groups, flat_w, flat_b, layer.eps)
        elif isinstance(layer, (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Identity)) and folded:
            h = layer(h)
        elif isinstance(layer, nn.Flatten) and folded:
            h = h.reshape(n, t, -1).transpose(0, 1)  # T × N × (C·H·W), C·H·W in vmap's order
            folded = False
        elif isinstance(layer, nn.Linear) and not folded:
            h = h @ w.transpose(1, 2) if b is None else torch.baddbmm(b.unsqueeze(1), h,
                                                                        w.transpose(1, 2))
        else:
            raise ValueError(f"task_forward: unsupported layer {name}: {layer}")
    return h.reshape(n, t, -1).transpose(0, 1) if folded else h
