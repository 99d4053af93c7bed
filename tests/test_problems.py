"""Standardized problems: determinism, losses, ground truth checked independently, end-to-end.

Every ground-truth method is checked against a computation that does not share its code:
inner solutions by the autodiff gradient ‖∇_θ g‖ ≈ 0; exact hypergradients by central finite
differences of F(λ) = f(θ*(λ), λ) and by blobench's ``exact`` algorithm (autodiff dense
Hessian solve) started at θ*(λ); minimum-norm solutions by their defining properties.
"""

from __future__ import annotations

import inspect
import itertools
import math

import pytest
import torch

from blobench import autodiff
from blobench.contracts.errors import UserError
from blobench.execution.harness import plan
from blobench.execution.registry import get_registry
from blobench.execution.runner import run_cells
from blobench.execution.store import ResultsStore

REG = get_registry()

# (name, overrides): small enough for a fast test, same code paths as the quick size
CASES = [
    ("logreg_ho", {}),
    ("datacleaning_logreg", {}),
    ("poison_logreg", {}),
    ("reweight_digits", {"n_train": 150, "n_val": 80}),
    ("distill_digits", {"n_train": 300}),
    ("overparam_linreg", {}),
    ("overparam_linreg", {"setting": "outer_overparam"}),
]
IDS = [name + ("-" + "-".join(map(str, o.values())) if o else "") for name, o in CASES]
_CACHE: dict[tuple[str, int, str], object] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # dense 650×650 solves are slow under thread contention
    yield
    torch.set_num_threads(threads)


def make(name: str, overrides: dict, seed: int = 0):
    key = (name, seed, repr(sorted(overrides.items())))
    if key not in _CACHE:
        _CACHE[key] = REG.problem(name)(seed=seed, **overrides)
    return _CACHE[key]


def perturbed_lam(prob, seed: int = 1, scale: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lam0 = prob.init_outer(torch.Generator().manual_seed(0))
    return lam0 + scale * torch.randn(lam0.shape, generator=g, dtype=lam0.dtype)


def ground_truth_theta(prob, lam: torch.Tensor) -> torch.Tensor:
    if prob.has("inner_solution"):
        return prob.inner_solution(lam)
    return prob.min_norm_inner(lam, prob.init_inner(lam, torch.Generator().manual_seed(0)))


def tensors(prob) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vars(prob).items() if isinstance(v, torch.Tensor)}


# ----------------------------------------------------------------------- standard checks
@pytest.mark.parametrize(("name", "over"), CASES, ids=IDS)
def test_deterministic_from_seed(name, over):
    a, b, c = make(name, over, 0), REG.problem(name)(seed=0, **over), make(name, over, 1)
    ta, tb, tc = tensors(a), tensors(b), tensors(c)
    assert ta and ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert any(ta[k].shape != tc[k].shape or not torch.equal(ta[k], tc[k]) for k in ta)
    g0, g1 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(a.init_outer(g0), b.init_outer(g1))


@pytest.mark.parametrize(("name", "over"), CASES, ids=IDS)
def test_losses_and_evaluate(name, over):
    prob = make(name, over)
    g = torch.Generator().manual_seed(0)
    lam = prob.init_outer(g)
    theta = prob.init_inner(lam, g)
    assert lam.shape == (prob.dim_outer,) and theta.shape == (prob.dim_inner,)
    assert lam.dtype == theta.dtype == torch.float64
    for loss in (prob.inner_loss(theta, lam), prob.outer_loss(theta, lam)):
        assert loss.dim() == 0 and math.isfinite(float(loss))
    metrics = prob.evaluate(theta, lam)
    assert prob.primary_metric in metrics
    assert all(math.isfinite(v) for v in metrics.values())
    batch = prob.sample_inner_batch(torch.Generator().manual_seed(0))
    assert math.isfinite(float(prob.inner_loss(theta, lam, batch)))


@pytest.mark.parametrize(("name", "over"), CASES, ids=IDS)
def test_inner_step_size_decreases_inner_loss(name, over):
    prob = make(name, over)
    lam = perturbed_lam(prob)
    theta = prob.init_inner(lam, torch.Generator().manual_seed(0))
    lr = prob.inner_step_size(lam)
    losses = [float(prob.inner_loss(theta, lam))]
    for _ in range(50):
        theta = theta - lr * autodiff.inner_grad(prob, theta, lam)
        losses.append(float(prob.inner_loss(theta, lam)))
    assert all(b <= a + 1e-12 * abs(a) for a, b in itertools.pairwise(losses))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(("name", "over"), CASES, ids=IDS)
def test_ground_truth_theta_is_stationary(name, over):
    prob = make(name, over)
    lam = perturbed_lam(prob)
    theta = ground_truth_theta(prob, lam)
    grad = autodiff.inner_grad(prob, theta, lam)
    assert float(torch.linalg.vector_norm(grad)) < 1e-9


@pytest.mark.parametrize(("name", "over"), CASES, ids=IDS)
def test_exact_hypergradient_finite_differences(name, over):
    prob = make(name, over)
    lam = perturbed_lam(prob)
    hg = prob.exact_hypergradient(lam)
    assert hg.shape == lam.shape

    def value(at: torch.Tensor) -> float:
        return float(prob.outer_loss(ground_truth_theta(prob, at), at))

    g = torch.Generator().manual_seed(2)
    eps = 1e-5
    for _ in range(3):
        d = torch.randn(lam.shape, generator=g, dtype=lam.dtype)
        d /= torch.linalg.vector_norm(d)
        fd = (value(lam + eps * d) - value(lam - eps * d)) / (2 * eps)
        # error relative to ‖∇F‖ (unit direction): robust when d ⟂ ∇F by chance
        assert abs(fd - float(hg @ d)) < 1e-4 * float(torch.linalg.vector_norm(hg)), (fd, hg @ d)


@pytest.mark.parametrize(("name", "over"), CASES, ids=IDS)
def test_exact_hypergradient_matches_exact_algorithm(name, over):
    prob = make(name, over)
    lam = perturbed_lam(prob)
    theta = ground_truth_theta(prob, lam)
    # blobench's exact algorithm (dense autodiff Hessian) started at θ*(λ); a negligible inner
    # step keeps θ there
    alg = REG.algorithm("exact")(inner_steps=1, inner_lr=1e-14, warm_start=True)
    state = alg.init(prob, theta, lam, torch.Generator().manual_seed(0))
    state = alg.step(prob, state)
    exact = prob.exact_hypergradient(state.hypergrad_at)
    err = torch.linalg.vector_norm(state.hypergrad - exact) / torch.linalg.vector_norm(exact)
    assert float(err) < 1e-6


# --------------------------------------------------------------- problem-specific checks
@pytest.mark.parametrize("setting", ["inner_overparam", "outer_overparam"])
def test_overparam_min_norm_inner(setting):
    prob = make("overparam_linreg", {} if setting == "inner_overparam" else {"setting": setting})
    lam = perturbed_lam(prob)
    theta0 = prob.init_inner(lam, None)
    w = prob.min_norm_inner(lam, theta0)
    # in S(λ): A w = B λ + b exactly (underdetermined system, consistent)
    resid = prob.a_mat @ w - prob.b_mat @ lam - prob.b_vec
    assert float(torch.linalg.vector_norm(resid)) < 1e-10
    # w − θ₀ in the row space of A: orthogonal to the null space (from an SVD of A)
    _, s, vh = torch.linalg.svd(prob.a_mat)
    null = vh[s.numel():]
    assert null.shape[0] == prob.dim_inner - prob.a_mat.shape[0] > 0
    assert float(torch.linalg.vector_norm(null @ (w - theta0))) < 1e-10
    # any other solution θ₀ + null-space move is farther from θ₀
    other = w + null.T @ torch.ones(null.shape[0], dtype=w.dtype)
    assert float(torch.linalg.vector_norm(prob.a_mat @ (other - w))) < 1e-10
    assert torch.linalg.vector_norm(other - theta0) > torch.linalg.vector_norm(w - theta0)
    # the problem's hypergradient is at the cold start from θ₀, not from 0
    assert not torch.allclose(w, prob.min_norm_inner(lam))


@pytest.mark.parametrize("setting", ["inner_overparam", "outer_overparam"])
def test_overparam_min_norm_outer(setting):
    prob = make("overparam_linreg", {} if setting == "inner_overparam" else {"setting": setting})
    lam0 = prob.init_outer(None)
    u = prob.min_norm_outer(lam0)
    hg = prob.exact_hypergradient(u)
    assert float(torch.linalg.vector_norm(hg)) < 1e-10  # a stationary point of F
    assert abs(prob.value(u) - prob.optimal_value()) < 1e-10
    # exact cold-start hypergradient descent from λ₀ converges to it
    lam, lr = lam0.clone(), prob.outer_step_size()
    for _ in range(3000):
        lam = lam - lr * prob.exact_hypergradient(lam)
    assert float(torch.linalg.vector_norm(lam - u)) < 1e-6
    if setting == "outer_overparam":  # many zero-loss solutions: u is the one nearest λ₀
        assert prob.optimal_value() < 1e-20
        other = u + torch.linalg.svd(prob.jac)[2][-1]  # move along the null space of J
        assert abs(prob.value(other)) < 1e-12
        assert torch.linalg.vector_norm(other - lam0) > torch.linalg.vector_norm(u - lam0)


@pytest.mark.parametrize("name", ["datacleaning_logreg", "reweight_digits"])
def test_detection_metrics(name):
    prob = make(name, dict(CASES)[name])
    assert prob.n_inner_samples == prob.dim_outer and prob.n_outer_samples > 0
    bad = prob.corrupted
    assert abs(float(bad.double().mean()) - prob.config["noise_rate"]) < 0.01
    lam = torch.where(bad, -5.0, 5.0).to(torch.float64)  # weight ≈ 0 exactly on corrupted points
    theta = prob.inner_solution(lam)
    m = prob.evaluate(theta, lam)
    assert m["precision"] == m["recall"] == m["corrupt_downweighted"] == 1.0
    # cleaning helps: the re-weighted model beats the uniformly weighted one
    uniform = prob.evaluate(prob.inner_solution(torch.zeros_like(lam)), lam)
    assert m["test_accuracy"] >= uniform["test_accuracy"]
    assert prob.evaluate(theta, torch.zeros_like(lam))["precision"] == 0.0


def test_reweight_digits_wrong_labels():
    prob = make("reweight_digits", dict(CASES)["reweight_digits"])
    assert bool((prob.y[prob.corrupted] != prob.y_clean[prob.corrupted]).all())
    assert bool((prob.y[~prob.corrupted] == prob.y_clean[~prob.corrupted]).all())


def test_poison_maximizes_validation_loss():
    prob = make("poison_logreg", {})
    assert not prob.higher_is_better
    lam = prob.init_outer(None)
    theta = prob.inner_solution(lam)
    m = prob.evaluate(theta, lam)
    assert float(prob.outer_loss(theta, lam)) == pytest.approx(-m["val_loss"])
    feats = prob.poison_features(lam * 100)  # the box holds however large λ gets
    assert float(feats[:, :-1].abs().max()) <= prob.config["box"]
    # descending f = −val loss with exact hypergradients raises the validation loss
    for _ in range(10):
        lam = lam - prob.outer_step_size() * prob.exact_hypergradient(lam)
    assert prob.evaluate(prob.inner_solution(lam), lam)["val_loss"] > m["val_loss"]


def test_bad_parameters_raise_user_error():
    with pytest.raises(UserError):
        REG.problem("logreg_ho")(n_train=500, n_val=200)
    with pytest.raises(UserError):
        REG.problem("overparam_linreg")(dim_theta=10, n_inner=10)
    with pytest.raises(UserError):
        REG.problem("reweight_digits")(noise_rate=1.5)


# --------------------------------------------------------------------------- end to end
def test_end_to_end_all_cells_ok(tmp_path):
    problems = ["logreg_ho", "datacleaning_logreg", "poison_logreg",
                "reweight_digits[n_train=150,n_val=80]", "distill_digits[n_train=300]",
                "overparam_linreg",
                "overparam_linreg[setting=outer_overparam]"]
    cells, skipped = plan(REG, problems, ["implicit_cg", "unrolled", "exact"], [0], steps=5,
                          eval_every=5)
    assert len(cells) == 21 and not skipped
    # in-process (no per-cell subprocess) to keep this test fast
    kw = {"isolate": False} if "isolate" in inspect.signature(run_cells).parameters else {}
    summary = run_cells(REG, cells, ResultsStore(tmp_path), progress=False, **kw)
    assert summary.statuses == {"ok": 21}, summary.text()
