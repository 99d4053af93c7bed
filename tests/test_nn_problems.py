"""Network problems of issue 20: the ConvNets (blobench/toolkit/convnets.py) and distill_convnet.

Expected values are written here from the definitions: parameter counts from the layer
formulas, the fixed-budget re-train as hand-written gradient steps on the synthetic
cross-entropy, the learnable step size as a scale of g.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blobench.bases.algorithm import cell_theta0
from blobench.contracts.errors import DataMissing
from blobench.execution import metrics
from blobench.toolkit import convnets


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _conv(c_in: int, c_out: int) -> int:
    return c_in * c_out * 9 + c_out


@pytest.mark.parametrize("channels, side, flat", [(1, 28, 3), (3, 32, 4)])
def test_convnet3_is_dc_bench_size(channels, side, flat):
    """ConvNet-3 width 128: three conv + instance-norm (scale, shift) blocks and a linear
    layer on 128·flat² features (28 → 14 → 7 → 3; 32 → 16 → 8 → 4)."""
    expected = (_conv(channels, 128) + 2 * _conv(128, 128) + 3 * 2 * 128
                + 128 * flat * flat * 10 + 10)
    model = convnets.convnet3(channels, side, 10)
    assert model.numel == expected
    assert expected == (308_746 if channels == 1 else 320_010)
    w = model.init(torch.Generator().manual_seed(0), torch.float32)
    assert model(w, torch.zeros(2, channels, side, side, dtype=torch.float32)).shape == (2, 10)


def test_conv4_features_and_batch_statistics():
    """Conv-4 on 28×28: 64 features; batch norm uses the batch's own statistics, so the
    output of one example depends on the rest of its batch, and vmap over tasks works."""
    model = convnets.conv4(1, 28, 0)
    assert convnets.n_features(1, 28, 64, 4) == 64
    w = model.init(torch.Generator().manual_seed(0), torch.float32)
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    assert model(w, x).shape == (5, 64)
    assert not torch.allclose(model(w, x)[:2], model(w, x[:2]))
    batched = torch.func.vmap(model, in_dims=(None, 0))(w, torch.stack([x, 2 * x]))
    assert torch.allclose(batched[0], model(w, x), atol=1e-5)


@pytest.fixture(scope="module")
def distill(registry):
    return registry.problem("distill_convnet")(size="quick", seed=0)


def test_distill_shapes_and_learnable_step(registry, distill):
    """λ = 10 images of 28×28 (+1 log step scale with learn_lr); g scales by e^s."""
    assert distill.dim_outer == 10 * 28 * 28
    assert distill.dim_inner == distill.model.numel
    p = registry.problem("distill_convnet")(size="quick", seed=0, learn_lr=True)
    lam = p.init_outer(torch.Generator())
    assert lam.numel() == 10 * 28 * 28 + 1 and float(lam[-1]) == 0.0
    theta = cell_theta0(p, lam)
    doubled = lam.clone()
    doubled[-1] = torch.log(torch.tensor(2.0))
    assert float(p.inner_loss(theta, doubled)) == pytest.approx(
        2 * float(p.inner_loss(theta, lam)), rel=1e-5)


def test_fixed_budget_retrain_is_hand_written_training(distill):
    """The re-trained θ*(λ) is exactly ``retrain_steps`` full-batch steps of size η from the
    cell's θ₀ on the synthetic cross-entropy (written here with torch.autograd)."""
    lam = distill.init_outer(torch.Generator())
    theta = cell_theta0(distill, lam).detach()
    x, y = distill.synthetic(lam), distill.y_syn
    for _ in range(distill.retrain_steps):
        w = theta.requires_grad_(True)
        loss = nn.functional.cross_entropy(distill.model(w, x), y)
        (grad,) = torch.autograd.grad(loss, w)
        theta = (w - distill.config["inner_lr"] * grad).detach()
    restart, steps = metrics.cold_restart(distill, lam)
    assert steps == distill.retrain_steps == 20
    assert torch.allclose(restart, theta, atol=1e-5)
    own = {"outer_loss": float(distill.outer_loss(theta, lam)), **distill.evaluate(theta, lam)}
    out = metrics.restart_metrics(distill, theta, lam, own)
    assert out["restart_test_accuracy"] == pytest.approx(own["test_accuracy"])


def test_cold_unrolled_distills_and_retrain_matches_own_theta(registry, distill):
    """Cold-start RHG on the quick problem learns images that teach the network (test
    accuracy from ≈ chance to > 40% in 8 outer steps); its own θ is a cold training, so the
    re-trained network at the λ θ was trained on has the same accuracy."""
    alg = registry.algorithm("unrolled")(warm_start=False)
    gen = torch.Generator().manual_seed(0)
    lam0 = distill.init_outer(gen)
    start = distill.evaluate(cell_theta0(distill, lam0), lam0)["test_accuracy"]
    state = alg.init(distill, cell_theta0(distill, lam0), lam0, gen)
    for _ in range(8):
        state = alg.step(distill, state)
    own = distill.evaluate(state.theta, state.lam)["test_accuracy"]
    assert start < 0.2 and own > 0.4
    retrained, _ = metrics.cold_restart(distill, state.hypergrad_at)
    assert distill.evaluate(retrained, state.lam)["test_accuracy"] == pytest.approx(own)


def test_missing_dataset_is_data_missing(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    with pytest.raises(DataMissing, match="blobench data fetch cifar10"):
        registry.problem("distill_convnet")(size="quick", dataset="cifar10")


# ------------------------------------------------------------------ few-shot with a CNN
def test_fewshot_pool_splits_base_classes_and_rotations():
    """Fashion-MNIST × 4 rotations: 28 meta-training / 12 meta-test classes; a rotated
    class is the rotated images of its base class; tasks carry labels 0..N−1 once per shot."""
    from blobench.toolkit import fewshot
    gen = torch.Generator().manual_seed(0)
    pool, train, test = fewshot.class_pool("fashion_mnist", 3, 7, 4, gen, torch.float64)
    assert pool.shape == (40, 3, 1, 28, 28) and len(train) == 28 and len(test) == 12
    assert set(train) | set(test) == set(range(40)) and train == list(range(28))
    assert torch.equal(pool[1], torch.rot90(pool[0], 1, dims=(2, 3)))
    (xs, ys), (xq, yq) = fewshot.sample_tasks(pool, test, 4, 5, 2, 1, gen)
    assert xs.shape == (4, 10, 1, 28, 28) and xq.shape == (4, 5, 1, 28, 28)
    assert ys[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and yq[0].tolist() == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def ridge(registry):
    return registry.problem("fewshot_ridge")(size="quick", seed=0, dtype="float64")


def test_ridge_heads_solve_the_inner_problem(ridge):
    lam = ridge.init_outer(torch.Generator().manual_seed(0))
    theta = ridge.inner_solution(lam).requires_grad_(True)
    (grad,) = torch.autograd.grad(ridge.inner_loss(theta, lam), theta)
    assert float(grad.norm()) < 1e-10


def test_ridge_exact_hypergradient_equals_finite_differences(ridge):
    """dF/dλ against central differences of F(λ) = f(θ*(λ), λ) in two random directions
    (batch norm on 5 images makes F sharply curved: ε = 1e-7 in float64)."""
    lam = ridge.init_outer(torch.Generator().manual_seed(0))
    exact = ridge.exact_hypergradient(lam)

    def value(at):
        return float(ridge.outer_loss(ridge.inner_solution(at), at))

    for seed in (3, 4):
        d = torch.randn(lam.shape, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        eps = 1e-7
        fd = (value(lam + eps * d) - value(lam - eps * d)) / (2 * eps)
        assert float(exact @ d) == pytest.approx(fd, rel=1e-4)


def test_ridge_ift_at_the_solution_equals_ground_truth(ridge):
    """The engine's implicit hypergradient ∇_λf − J H⁻¹∇_θf at θ*(λ) with a dense solve (a
    different route: IFT with autograd second derivatives) equals the closed-form total
    derivative; a sign or transposition error would not."""
    from blobench import autodiff

    lam = ridge.init_outer(torch.Generator().manual_seed(1))
    theta = ridge.inner_solution(lam)
    estimate, _ = autodiff.implicit_hypergradient(
        ridge, theta, lam, lambda ops, b: torch.linalg.solve(ops.dense_hessian(), b))
    exact = ridge.exact_hypergradient(lam)
    assert float((estimate - exact).norm() / exact.norm()) < 1e-6


def test_ridge_evaluate_keeps_the_last_lambda_only(registry, ridge):
    """``evaluate`` depends on λ alone and keeps its last result (issue 15): the own and the
    re-trained metrics of an evaluation equal a fresh instance's, another λ — or the same
    tensor changed in place — is recomputed, and a caller editing the returned dict does not
    edit the kept one."""
    gen = torch.Generator().manual_seed(0)
    lam = ridge.init_outer(gen)
    theta = ridge.inner_solution(lam)
    own = ridge.evaluate(theta, lam)
    assert ridge.evaluate(torch.zeros_like(theta), lam) == own  # θ does not enter it
    fresh = registry.problem("fewshot_ridge")(size="quick", seed=0, dtype="float64")
    assert fresh.evaluate(theta, lam.clone()) == own
    other = lam + 0.05 * torch.randn(lam.shape, generator=gen, dtype=lam.dtype)
    moved = ridge.evaluate(theta, other)
    assert moved["test_loss"] != own["test_loss"]
    assert moved == fresh.evaluate(theta, other.clone())
    other.mul_(0.5)  # in place: the kept λ is a copy, so this is a new λ
    assert ridge.evaluate(theta, other) == fresh.evaluate(theta, other.clone()) != moved
    ridge.evaluate(theta, lam)["test_loss"] = -1.0
    assert ridge.evaluate(theta, lam) == own


@pytest.mark.parametrize("build", ["conv4_head", "conv4_features", "convnet3"])
def test_task_forward_equals_vmap(build):
    """The grouped-convolution forward of T tasks equals vmap of the model, values and
    gradients in the per-task weights: batch norm per task (conv4), instance norm and average
    pooling (convnet3), the classifier's row order after flattening."""
    from blobench.toolkit import convnets

    model = {"conv4_head": lambda: convnets.conv4(1, 12, 5, width=3, depth=2),
             "conv4_features": lambda: convnets.conv4(2, 8, 0, width=4, depth=2),
             "convnet3": lambda: convnets.convnet3(1, 12, 4, width=3, depth=2)}[build]()
    gen = torch.Generator().manual_seed(0)
    channels = 2 if build == "conv4_features" else 1
    side = 8 if build == "conv4_features" else 12
    weights = torch.stack([model.init(gen, torch.float64) for _ in range(3)])
    weights.requires_grad_(True)
    x = torch.randn(3, 4, channels, side, side, generator=gen, dtype=torch.float64)
    grouped = convnets.task_forward(model, weights, x)
    mapped = torch.func.vmap(model)(weights, x)
    assert grouped.shape == mapped.shape
    assert torch.allclose(grouped, mapped, rtol=0, atol=1e-12)
    probe = torch.randn(mapped.shape, generator=gen, dtype=torch.float64)
    (g1,) = torch.autograd.grad((grouped * probe).sum(), weights)
    (g2,) = torch.autograd.grad((mapped * probe).sum(), weights)
    assert torch.allclose(g1, g2, rtol=0, atol=1e-12)


def test_conv4_evaluate_equals_vmap_adaptation(registry):
    """``evaluate`` (grouped forward, autograd of the sum over tasks) gives the numbers of the
    per-task ``torch.func.grad`` adaptation under vmap, proximal term included."""
    p = registry.problem("fewshot_conv4")(size="quick", seed=0, n_test_tasks=6, dtype="float64",
                                          proximal=0.5)
    lam = p.init_outer(torch.Generator().manual_seed(0))
    rho, lr = p.config["proximal"], p.config["inner_lr"]

    def loss(w, x, y, anchor):
        return p.task_loss(w, x, y) + 0.5 * rho * ((w - anchor) ** 2).sum()

    grad = torch.func.vmap(torch.func.grad(loss), in_dims=(0, 0, 0, None))
    parts = []
    for support, query in p.test_chunks():
        w = lam.expand(support[0].shape[0], -1).clone()
        for _ in range(p.config["eval_steps"]):
            w = w - lr * grad(w, *support, lam)
        parts.append((torch.func.vmap(p.model)(w, query[0]), query[1]))
    expected = p.summarize(parts)
    got = p.evaluate(None, lam)
    assert got["test_accuracy"] == expected["test_accuracy"]
    assert got["test_loss"] == pytest.approx(expected["test_loss"], rel=1e-10)


def test_maml_conv4_vmaps_tasks_and_starts_at_lambda(registry):
    p = registry.problem("fewshot_conv4")(size="quick", seed=0, n_tasks=3)
    lam = p.init_outer(torch.Generator().manual_seed(0))
    theta = p.init_inner(lam, torch.Generator())
    assert theta.numel() == 3 * lam.numel() and torch.equal(theta[lam.numel():2 * lam.numel()],
                                                            lam)
    looped = sum(nn.functional.cross_entropy(p.model(lam, p.support[0][i]), p.support[1][i])
                 for i in range(3))
    assert float(p.inner_loss(theta, lam)) == pytest.approx(float(looped), rel=1e-5)
    assert not p.lam_in_losses() and p.lam_in_losses({"proximal": 1.0})
    out = p.evaluate(theta, lam)
    assert 0.0 <= out["test_accuracy"] <= 1.0


def test_fewshot_without_mnist_is_data_missing(registry, monkeypatch, tmp_path):
    from blobench.toolkit.data import status

    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    if status("mnist") is not None:
        pytest.skip("MNIST is installed system-wide here")
    with pytest.raises(DataMissing, match="blobench data fetch mnist"):
        registry.problem("fewshot_ridge")(size="quick", dataset="both")


# ------------------------------------------------------------------ Meta-Weight-Net
def test_meta_weight_net_long_tail_and_weighted_loss(registry):
    """Class k keeps ⌊n_max · 10^{−k/9}⌋ images (at least 1); g is the mean of V(ℓ_i)·ℓ_i with V the
    sigmoid of the MLP on each sample's own loss (written here with a per-sample loop)."""
    p = registry.problem("meta_weight_net")(size="quick", seed=0, noise=0.2)
    counts = torch.bincount(p.y[~p.flipped], minlength=10) + torch.bincount(
        p.y[p.flipped], minlength=10)
    n_max = p.config["n_max"]
    assert int(counts.sum()) == sum(max(1, int(n_max * 10 ** (-k / 9))) for k in range(10))
    assert 0.05 < float(p.flipped.float().mean()) < 0.4
    assert torch.bincount(p.y_val).tolist() == [5] * 10
    lam = p.init_outer(torch.Generator())
    theta = cell_theta0(p, lam)
    total = 0.0
    for i in range(5):
        loss = nn.functional.cross_entropy(p.model(theta, p.x[i:i + 1]), p.y[i:i + 1])
        weight = torch.sigmoid(p.weight_net(lam, loss.reshape(1, 1)))
        total += float(weight * loss)
    assert float(p.inner_loss(theta, lam, torch.arange(5))) == pytest.approx(total / 5, rel=1e-5)
    assert p.own_theta_deployed and not p.inner_unique


# ------------------------------------------------------------------ learning-rate schedule
@pytest.fixture(scope="module")
def schedule(registry):
    return registry.problem("lr_schedule")(size="quick", seed=0, n_steps=4, n_train=50,
                                           n_val=50, hidden=8, dtype="float64")


def test_schedule_steps_are_the_scheduled_sgd(schedule):
    """T' ≥ T gradient steps of size 1 on g from θ₀ = hand-written SGD with the step sizes
    e^{a_0..a_{T−1}}, then nothing moves; the counter ends at T'."""
    from blobench import autodiff

    lam = torch.log(torch.tensor([0.05, 0.2, 0.1, 0.3], dtype=torch.float64))
    theta0 = cell_theta0(schedule, lam)
    w = theta0[:-1].clone()
    for a in lam:
        w = w.requires_grad_(True)
        loss = nn.functional.cross_entropy(schedule.model(w, schedule.x), schedule.y)
        (grad,) = torch.autograd.grad(loss, w)
        w = (w - torch.exp(a) * grad).detach()
    theta = autodiff.gradient_descent(schedule, theta0, lam, 6, 1.0)
    assert torch.allclose(theta[:-1], w, atol=1e-12) and float(theta[-1]) == 6.0


def test_schedule_unrolled_hypergradient_equals_finite_differences(registry, schedule):
    lam = torch.log(torch.tensor([0.05, 0.2, 0.1, 0.3], dtype=torch.float64))
    alg = registry.algorithm("unrolled")(inner_steps=4)
    gen = torch.Generator()
    state = alg.step(schedule, alg.init(schedule, cell_theta0(schedule, lam), lam, gen))

    def value(at):
        from blobench import autodiff

        theta = autodiff.gradient_descent(schedule, cell_theta0(schedule, at), at, 4, 1.0)
        return float(schedule.outer_loss(theta, at))

    for k in range(4):
        e = torch.zeros(4, dtype=torch.float64)
        e[k] = 1e-6
        fd = (value(lam + e) - value(lam - e)) / 2e-6
        assert float(state.hypergrad[k]) == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_schedule_skips_estimators_that_assume_an_inner_optimum(registry, schedule):
    cls = type(schedule)
    for name in ("implicit_cg", "soba", "penalty", "bome", "exact", "bda"):
        assert "no inner optimum" in registry.algorithm(name)().skip_reason(cls)
    for name in ("unrolled", "truncated", "forward_mode"):
        assert registry.algorithm(name)().skip_reason(cls) is None
    assert "no inner optimum" in registry.algorithm("unrolled")(warm_start=True).skip_reason(cls)


def test_reproduce_convnet_claim_verdict(tmp_path):
    """vicol2022 claim 3b reads warm / cold / warm + re-train accuracies per IPC from the
    records and says 'reproduced' only when warm > cold > re-train at both IPCs."""
    import pandas as pd

    from blobench.workflows.reproduce import REPRODUCED, vicol_report

    def frame(retrain_10):
        rows = []
        for ipc, warm, cold, retrain in ((1, 0.6, 0.4, 0.2), (10, 0.8, 0.7, retrain_10)):
            for is_warm, acc in ((True, warm), (False, cold)):
                rows.append({"status": "ok", "algorithm.warm_start": is_warm,
                             "problem.per_class": ipc, "test_accuracy": acc,
                             "restart_test_accuracy": retrain if is_warm else acc})
        return {"c3_convnet": pd.DataFrame(rows)}

    rep = vicol_report(frame(0.3), tmp_path, "v")
    (claim,) = [v for v in rep.verdicts if v.claim.startswith("3b")]
    assert claim.verdict == REPRODUCED and (tmp_path / "v-claim3b.png").exists()
    rep = vicol_report(frame(0.75), tmp_path, "v")
    (claim,) = [v for v in rep.verdicts if v.claim.startswith("3b")]
    assert claim.verdict != REPRODUCED and "1/2" in claim.measured


def test_chunked_loss_has_the_derivatives_of_the_full_batch_loss():
    """Checkpointed chunks: value, gradient and a Hessian-vector product (double backward)
    equal those of the unchunked mean cross-entropy."""
    model = convnets.convnet3(1, 28, 10, width=4, depth=2)
    w = model.init(torch.Generator().manual_seed(0)).requires_grad_(True)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 1, 28, 28, generator=gen), torch.randint(10, (30,), generator=gen)
    v = torch.randn(w.shape, generator=gen)
    out = []
    for loss in (nn.functional.cross_entropy(model(w, x), y),
                 convnets.mean_cross_entropy(model, w, x, y, chunk=7)):
        (grad,) = torch.autograd.grad(loss, w, create_graph=True)
        (hvp,) = torch.autograd.grad(grad @ v, w)
        out.append((loss.detach(), grad.detach(), hvp))
    for full, chunked in zip(*out, strict=True):
        assert torch.allclose(full, chunked, rtol=1e-10, atol=1e-12)
