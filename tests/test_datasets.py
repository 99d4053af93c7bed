"""The bundled scikit-learn datasets read without importing scikit-learn (issue 15:
blobench/toolkit/datasets.py) are scikit-learn's own, bit for bit, and reading them does not
import it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from blobench.toolkit import datasets

LOADERS = {"breast_cancer": (datasets.load_breast_cancer_arrays, (569, 30), 2),
           "digits": (datasets.load_digits_arrays, (1797, 64), 10)}


@pytest.mark.parametrize("name", LOADERS)
def test_bundled_files_equal_scikit_learns_loaders(name):
    import sklearn.datasets

    loader, shape, classes = LOADERS[name]
    features, target = loader()
    reference = getattr(sklearn.datasets, f"load_{name}")()
    assert features.shape == shape and features.dtype == np.float64
    assert np.array_equal(features, reference.data)  # exact: same doubles
    assert target.dtype == np.int64 and np.array_equal(target, reference.target)
    assert len(np.unique(target)) == classes


@pytest.mark.parametrize("name", LOADERS)
def test_falls_back_to_scikit_learn_when_the_file_is_not_found(name, monkeypatch):
    monkeypatch.setattr(datasets, "_bundled_file", lambda _: None)
    loader, shape, _ = LOADERS[name]
    features, _ = loader()
    assert features.shape == shape


def test_reading_them_does_not_import_scikit_learn():
    code = ("import sys; from blobench.toolkit import datasets; "
            "datasets.load_breast_cancer_arrays(); datasets.load_digits_arrays(); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
