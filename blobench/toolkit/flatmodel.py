"""A flat parameter vector ↔ ``nn.Module`` view, for problems whose θ or λ are network weights.

blobench keeps θ and λ as flat 1-D tensors (design.md). :class:`FlatModel` maps such a vector
onto the parameter shapes of a module and evaluates the module with those weights through
``torch.func.functional_call``, so the result stays differentiable in the flat vector and
composes with ``torch.func.vmap`` (one weight vector per task, as in MAML).

API (small on purpose):

- ``FlatModel(module)``: the view; ``numel`` is the flat length, ``names`` and ``shapes``
  the module's parameters in order.
- ``model(flat, *inputs)``: the module's output with the weights ``flat``.
- ``model.unflatten(flat)``: ``{name: tensor}`` views of ``flat``.
- ``model.flatten()``: the module's own current parameters as one flat vector.
- ``model.init(generator, dtype, device)``: a fresh flat vector drawn from ``generator`` with
  PyTorch's default layer initialization (uniform ±1/√fan_in for the weight and bias of
  every layer that has a ≥2-D ``weight``; other parameters keep the module's own values).
- ``mlp(sizes, activation)``: an ``nn.Sequential`` of Linear layers with ``activation``
  between them (``sizes = [in, hidden..., out]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

Tensor = torch.Tensor


class FlatModel:
    """Evaluate ``module`` with its parameters taken from a flat vector (see module docstring)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        named = list(module.named_parameters())
        self.names: list[str] = [n for n, _ in named]
        self.shapes: list[torch.Size] = [p.shape for _, p in named]
        self.numels: list[int] = [p.numel() for _, p in named]
        self.numel: int = sum(self.numels)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """``{name: view of flat with that parameter's shape}``."""
        if flat.shape != (self.numel,):
            raise ValueError(f"expected a flat vector of length {self.numel}, "
                             f"got shape {tuple(flat.shape)}")
        chunks = torch.split(flat, self.numels)
        return {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes, strict=True)}

    def __call__(self, flat: Tensor, *inputs: Tensor) -> Tensor:
        return torch.func.functional_call(self.module, self.unflatten(flat), inputs)

    def flatten(self) -> Tensor:
        """The module's own parameters, concatenated (detached)."""
        return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])

    def init(self, generator: torch.Generator, dtype: torch.dtype = torch.float64,
             device: str | torch.device = "cpu") -> Tensor:
        """Initial weights drawn from ``generator`` (PyTorch's default Linear/Conv scheme)."""
        values: dict[str, Tensor] = {}
        for mod_name, mod in self.module.named_modules():
            weight = getattr(mod, "weight", None)
            if not isinstance(weight, nn.Parameter) or weight.dim() < 2:
                continue
            bound = 1.0 / math.sqrt(weight[0].numel())
            for p_name, p in mod.named_parameters(recurse=False):
                full = f"{mod_name}.{p_name}" if mod_name else p_name
                u = torch.rand(p.shape, generator=generator, dtype=dtype)
                values[full] = (2.0 * u - 1.0) * bound
        own = dict(self.module.named_parameters())
        parts = [values.get(n, own[n].detach().to(dtype)).reshape(-1) for n in self.names]
        return torch.cat(parts).to(device)


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers ``sizes[0] → … → sizes[-1]`` with ``activation`` between them."""
    if len(sizes) < 2:
        raise ValueError("an MLP needs at least an input and an output size")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        if i:
            layers.append(activation())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)
