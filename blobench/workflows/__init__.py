"""Workflows built on execution and reporting: the Python API and run pipeline (``api``),
tuning (``tuning``), paper reproductions (``reproduce``), benchmarks (``bench``, ``speed``),
entry checks (``check``, ``check_claims``) and scaffolding of new entries (``scaffold``).
"""
