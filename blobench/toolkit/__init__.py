"""Shared model and data helpers for problems: GLM losses and solvers (``glm``), flat-parameter
models (``flatmodel``, ``convnets``), dataset loading and splits (``datasets``, the ``data``
layer: catalog, root, fetch, parsers), mini-batch sampling (``sampling``), few-shot episodes
(``fewshot``). Built on contracts and autodiff.
"""
