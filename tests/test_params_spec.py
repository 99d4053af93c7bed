"""Bracket syntax and hyperparameter validation."""

from __future__ import annotations

import pytest

from blobench.contracts.errors import UserError
from blobench.contracts.params import Param, resolve
from blobench.execution.spec import expand, format_entry, parse


def test_bracket_grid_is_cartesian_product():
    name, grid = expand("implicit_cg[cg_steps=[5,20],warm_start=[true,false],inner_lr=0.1]")
    assert name == "implicit_cg"
    assert len(grid) == 4
    assert {(g["cg_steps"], g["warm_start"]) for g in grid} == {
        ("5", "true"), ("5", "false"), ("20", "true"), ("20", "false")}
    assert all(g["inner_lr"] == "0.1" for g in grid)


def test_plain_name_is_one_point():
    assert expand("unrolled") == ("unrolled", [{}])
    assert parse(" exact [ inner_steps = 3 ] ") == ("exact", {"inner_steps": ["3"]})


@pytest.mark.parametrize("text", ["cg[", "cg[a=1", "cg]", "cg[a]", "cg[a=]", "cg[a=[1,]]",
                                  "cg[a=1,a=2]", "[a=1]", "cg[a=[1,2]"])
def test_malformed_brackets_are_user_errors(text):
    with pytest.raises(UserError):
        expand(text)


def test_format_entry_roundtrip():
    assert format_entry("x", {"b": 2, "a": 1}) == "x[a=1,b=2]"
    assert format_entry("x", {}) == "x"


PARAMS = {
    "steps": Param(int, 10, low=1),
    "lr": Param(float, None, optional=True, low=0.0, low_open=True),
    "warm": Param(bool, True),
    "opt": Param(str, "sgd", choices=("sgd", "adam")),
}


def test_resolve_converts_strings_and_fills_defaults():
    out = resolve("alg", PARAMS, {"steps": "5", "lr": "1e-3", "warm": "false"})
    assert out == {"steps": 5, "lr": 1e-3, "warm": False, "opt": "sgd"}
    assert resolve("alg", PARAMS, {"lr": "none"})["lr"] is None


@pytest.mark.parametrize("given, words", [
    ({"steps": "0"}, "steps=0 must be >= 1"),
    ({"steps": "2.5"}, "not a valid int"),
    ({"lr": "-1"}, "lr=-1.0 must be > 0.0"),
    ({"lr": "0"}, "must be > 0.0"),
    ({"warm": "maybe"}, "not a valid bool"),
    ({"opt": "lbfgs"}, "not one of"),
    ({"stpes": 3}, "did you mean 'steps'"),
    ({"steps": None}, "may not be None"),
    ({"lr": "nan"}, "must be finite"),
])
def test_bad_values_name_the_parameter(given, words):
    with pytest.raises(UserError, match="alg") as err:
        resolve("alg", PARAMS, given)
    assert words in str(err.value)


def test_dtype_param_accepts_the_two_precisions_and_rejects_others():
    import torch

    from blobench.contracts.params import dtype_param, torch_dtype

    spec = {"dtype": dtype_param("float32")}
    assert resolve("p", spec, {}) == {"dtype": "float32"}
    assert resolve("p", spec, {"dtype": "float64"}) == {"dtype": "float64"}
    assert torch_dtype("float32") is torch.float32 and torch_dtype("float64") is torch.float64
    with pytest.raises(UserError, match=r"float16.*not one of"):
        resolve("p", spec, {"dtype": "float16"})
    with pytest.raises(ValueError):
        dtype_param("half")
