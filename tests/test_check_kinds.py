"""``blobench check`` verifies what each entry claims, never crashes, and fails wrong entries.

Issue 25 / 23.6: a zero MAML hypergradient, a wrong-way Reptile, an alternating method taking
∇_λ f before its inner steps, a problem with a wrong ``exact_hypergradient`` and no
``inner_solution`` must all FAIL; an entry that applies to no check problem gets a clear
verdict, not a traceback; every registered entry passes its own check (slow test; a fast subset,
one entry per kind, runs by default).
"""

from __future__ import annotations

import pytest
import torch

from blobench.cli import main
from blobench.workflows import check_claims
from blobench.workflows.check import check_algorithm, check_problem, format_report


def _failed(findings):
    return [f for f in findings if not f.passed]


def _register(registry, monkeypatch, cls):
    monkeypatch.setitem(registry.algorithms, cls.name, cls)


# ----------------------------------------------------------------------- the kinds
def test_kinds_of_the_registered_entries(registry):
    kinds = {name: check_claims.entry_kind(registry.algorithm(name), name)
             for name in ("implicit_cg", "one_step", "alternating", "darts_fd", "penalty",
                          "bome", "f2sa", "soba", "maml", "imaml", "fomaml", "reptile")}
    assert kinds == {"implicit_cg": "consistent", "one_step": "approximation",
                     "alternating": "approximation", "darts_fd": "approximation",
                     "penalty": "lambda_star", "bome": "lambda_star", "f2sa": "lambda_star",
                     "soba": "stochastic", "maml": "meta", "imaml": "meta",
                     "fomaml": "approximation", "reptile": "approximation"}


FAST = ["one_step", "alternating", "darts_fd", "maml", "reptile", "exact"]


@pytest.mark.parametrize("name", FAST)
def test_fast_subset_passes_its_own_check(registry, name):
    findings = check_algorithm(registry, name, problems=["quadratic", "sinusoid"])
    assert not _failed(findings), format_report(name, findings)


#: registered entries of other developers that fail their check at defaults (reported)
KNOWN_FAILING: dict[str, str] = {}


@pytest.mark.slow
def test_every_registered_entry_passes_its_own_check(registry):
    failures = {}
    for name in sorted(registry.algorithms):
        if name in KNOWN_FAILING:
            continue
        findings = check_algorithm(registry, name)
        if _failed(findings):
            failures[name] = format_report(name, _failed(findings))
    assert not failures, "\n".join(failures.values())


# --------------------------------------------------------------- wrong entries fail
def test_a_zero_maml_hypergradient_fails(registry, monkeypatch):
    base = registry.algorithm("maml")

    class ZeroMAML(base):
        name = "zero_maml"

        def hypergradient(self, problem, state):
            theta, hypergrad = super().hypergradient(problem, state)
            return theta, torch.zeros_like(hypergrad)

    _register(registry, monkeypatch, ZeroMAML)
    failed = _failed(check_algorithm(registry, "zero_maml", problems=["sinusoid"]))
    assert "meta-gradient vs finite differences" in [f.check for f in failed], failed


def test_a_wrong_way_reptile_fails(registry, monkeypatch):
    base = registry.algorithm("reptile")

    class WrongWay(base):
        name = "wrong_way_reptile"

        def hypergradient(self, problem, state):
            theta, direction = super().hypergradient(problem, state)
            return theta, -direction

    _register(registry, monkeypatch, WrongWay)
    failed = _failed(check_algorithm(registry, "wrong_way_reptile", problems=["sinusoid"]))
    assert failed[0].check == "approximation: first_order_meta", failed
    assert "slope of F_T" in failed[0].detail and "-" in failed[0].detail


def test_grad_lambda_f_before_the_inner_steps_fails(registry, monkeypatch):
    from blobench import autodiff
    base = registry.algorithm("alternating")

    class Early(base):
        name = "early_alternating"

        def hypergradient(self, problem, state):
            lam = state.lam.detach()
            before = state.theta
            theta = self.solve_inner(problem, state, lam)
            return theta, autodiff.outer_grads(problem, before, lam)[1]

    _register(registry, monkeypatch, Early)
    failed = _failed(check_algorithm(registry, "early_alternating", problems=["quadratic"]))
    assert "approximation: partial_gradient" in [f.check for f in failed], failed


def test_a_one_step_with_the_wrong_scale_fails(registry, monkeypatch):
    base = registry.algorithm("one_step")

    class Doubled(base):
        name = "doubled_one_step"

        def solve(self, problem, ops, b, previous):
            return 2.0 * super().solve(problem, ops, b, previous)

    _register(registry, monkeypatch, Doubled)
    failed = _failed(check_algorithm(registry, "doubled_one_step", problems=["quadratic"]))
    assert "approximation: identity_hessian" in [f.check for f in failed]


def test_an_entry_that_applies_nowhere_gets_a_verdict_not_a_traceback(registry, monkeypatch,
                                                                      capsys):
    base = registry.algorithm("implicit_cg")

    class Picky(base):
        name = "picky"

        def applies_to(self, problem, params=None):
            return "needs a problem with a `widgets` parameter"

    _register(registry, monkeypatch, Picky)
    findings = check_algorithm(registry, "picky", problems=["quadratic", "ridge_ho"])
    failed = _failed(findings)
    assert failed[0].check == "applies to a check problem"
    assert "needs a problem with a `widgets` parameter" in failed[0].detail
    assert "blobench check picky -p PROBLEM" in failed[0].detail
    capsys.readouterr()
    assert main(["check", "imaml", "-p", "quadratic"]) == 1  # exits cleanly, says why
    out = capsys.readouterr().out
    assert "FAIL  applies to a check problem" in out and "inner_init_is_outer" in out


def test_check_with_a_problem_uses_its_exact_hypergradient(registry):
    """`check NAME -p overparam_linreg`: no inner_solution, but an exact_hypergradient."""
    findings = check_algorithm(registry, "exact", problems=["overparam_linreg"])
    labels = [f.check for f in findings]
    assert "hypergradient vs exact (overparam_linreg)" in labels
    assert not _failed(findings), format_report("exact", findings)


# ------------------------------------------------------------------------ problems
def test_problem_exact_hypergradient_is_checked_by_finite_differences(registry, monkeypatch):
    base = registry.problem("overparam_linreg")
    findings = check_problem(registry, "overparam_linreg")
    fd = [f for f in findings if f.check.startswith("exact_hypergradient vs finite")]
    assert fd and fd[0].passed and "min_norm_inner" in fd[0].detail

    class Flipped(base):
        name = "flipped_overparam"

        def exact_hypergradient(self, lam):
            return -super().exact_hypergradient(lam)

    monkeypatch.setitem(registry.problems, "flipped_overparam", Flipped)
    findings = check_problem(registry, "flipped_overparam")
    fd = [f for f in findings if f.check.startswith("exact_hypergradient vs finite")]
    assert fd and not fd[0].passed


@pytest.mark.parametrize("name", ["box_qp", "lasso_ho", "svm_dual_ho"])
def test_constrained_problems_pass_the_prox_aware_problem_checks(registry, name, monkeypatch):
    """Issue 22: on a constrained / non-smooth lower level the stationarity check uses the
    proximal-gradient mapping and the hypergradient check the proximal fixed point's IFT (the
    plain ∇θ g = 0 conditions fail there). Self-check: a prox that ignores the constraint
    (the identity) makes the stationarity check fail."""
    findings = check_problem(registry, name)
    assert not _failed(findings), format_report(name, findings)
    base = registry.problem(name)

    class NoProx(base):
        def inner_prox(self, theta, lam, step):
            return theta

    monkeypatch.setitem(registry.problems, name, NoProx)
    findings = check_problem(registry, name)
    assert not next(f for f in findings if f.check == "inner_solution is stationary").passed
