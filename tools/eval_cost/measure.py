"""Evaluation / solver time of one in-process cell per problem (issue 15; speed.py's choice
of algorithm, default budget and schedule). Evaluation = evaluate_state + step_tensor_peak (as
blobench.workflows.speed) + the reference points and the probe at them (which speed.py leaves out).
Usage: ``python tools/eval_cost/measure.py MODE PROBLEM...`` prints one JSON line per
problem (solver_s, eval_s, share, the parts, peak_tensor_mib, the final metrics) of the 2nd of
two cells in one process (warm, like a forked cell; with the current code its reference λ's
come from the file the 1st wrote). MODE is a label; to compare with an older tree, run it with
``PYTHONPATH=<export of that tree>`` (``git archive <commit> | tar -x -C DIR``) from outside the
repository, interleaved with the current tree per problem (ratios from the same load).
A fresh ``$XDG_CACHE_HOME`` is used."""
import json
import os
import sys
import tempfile
import time

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
import blobench
from blobench.execution import harness
from blobench.execution.registry import get_registry
from blobench.workflows.speed import _first_applicable

reg = get_registry()
spent = {}
def timed(name, fn):
    def w(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
    return w
for name in ("evaluate_state", "step_tensor_peak", "shared_references", "reference_lambdas",
             "probe_hypergradients"):
    if hasattr(harness, name):
        setattr(harness, name, timed(name, getattr(harness, name)))

mode, problems = sys.argv[1], sys.argv[2:]
for problem in problems:
    alg = _first_applicable(reg, problem)
    c = harness.plan(reg, [problem], [alg], [0])[0][0]
    for _ in range(2):  # the 2nd cell: warm process (as a forked cell)
        spent.clear()
        t0 = time.perf_counter()
        r = harness.run_cell(reg, c)
        wall = time.perf_counter() - t0
    ev = sum(spent.values())
    print(json.dumps({"mode": mode, "tree": blobench.__file__, "problem": problem,
                      "algorithm": alg, "solver_s": r["solver_seconds"], "eval_s": ev,
                      "wall_s": wall, "share": ev / r["solver_seconds"], "parts": spent,
                      "peak_tensor_mib": r["peak_tensor_mib"], "final": r["final"]}), flush=True)
