"""A new algorithm from zero to a leaderboard row, and `blobench check` catching a wrong one."""

from __future__ import annotations

from blobench.cli import main

WRONG_SIGN = '''
from blobench import ImplicitDoubleLoop
from blobench.autodiff import cg


class WrongSign(ImplicitDoubleLoop):
    """CG hypergradient with the implicit term's sign flipped: ∇_λ f + J v (a bug)."""

    name = "wrong_sign"

    def solve(self, problem, ops, b, previous):
        return -cg(ops.hvp, b, 10)
'''


def test_scaffold_check_run_leaderboard(tmp_path, capsys):
    plugins, res, lb = tmp_path / "mine", tmp_path / "res", tmp_path / "lb"
    assert main(["new", "algorithm", "my_method", "--dir", str(plugins)]) == 0
    assert (plugins / "my_method.py").exists()
    assert main(["new", "algorithm", "my_method", "--dir", str(plugins)]) == 2  # no overwrite
    assert main(["new", "algorithm", "Bad-Name", "--dir", str(plugins)]) == 2
    capsys.readouterr()
    code = main(["check", "my_method", "--plugins", str(plugins), "-p", "quadratic",
                 "-p", "ridge_ho"])
    report = capsys.readouterr().out
    assert code == 0, report
    assert "PASS  hypergradient vs exact (quadratic)" in report
    assert main(["run", "-a", "my_method", "-p", "ridge_ho", "--seeds", "2", "--steps", "5",
                 "--plugins", str(plugins), "--results", str(res), "--no-progress"]) == 0
    assert main(["leaderboard", "--results", str(res), "--out", str(lb),
                 "--plugins", str(plugins)]) == 0
    assert "`my_method`" in (lb / "ridge_ho-quick.md").read_text()


def test_check_fails_a_wrong_sign_with_a_clear_report(tmp_path, capsys):
    plugins = tmp_path / "bad"
    plugins.mkdir()
    (plugins / "wrong_sign.py").write_text(WRONG_SIGN)
    code = main(["check", "wrong_sign", "--plugins", str(plugins), "-p", "quadratic"])
    report = capsys.readouterr().out
    assert code == 1
    assert "FAIL  hypergradient vs exact (quadratic)" in report
    assert "mean cosine -" in report


def test_new_problem_passes_its_own_check(tmp_path, capsys):
    plugins = tmp_path / "probs"
    assert main(["new", "problem", "my_problem", "--dir", str(plugins)]) == 0
    capsys.readouterr()
    code = main(["check", "--problem", "my_problem", "--plugins", str(plugins)])
    report = capsys.readouterr().out
    assert code == 0, report
    assert "PASS  inner_solution is stationary" in report


def test_entry_point_plugins_are_discovered(monkeypatch):
    import blobench.execution.registry as registry_module
    from blobench import ImplicitDoubleLoop

    class FromPackage(ImplicitDoubleLoop):
        name = "from_package"

        def solve(self, problem, ops, b, previous):
            return b

    class FakeEntryPoint:
        name, value = "from_package", "somepkg.module:FromPackage"

        def load(self):
            return FromPackage

    class Broken(FakeEntryPoint):
        name, value = "broken", "brokenpkg:Nope"

        def load(self):
            raise ImportError("No module named 'brokenpkg'")

    monkeypatch.setattr(registry_module, "entry_points",
                        lambda group: [FakeEntryPoint(), Broken()]
                        if group == "blobench.algorithms" else [])
    reg = registry_module.Registry()
    assert reg.algorithm("from_package") is FromPackage
    assert any("brokenpkg" in where and "No module named" in msg for where, msg in reg.errors)
