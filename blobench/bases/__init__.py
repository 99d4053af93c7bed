"""Algorithm bases: the Algorithm API and the double-loop / implicit families (``algorithm``),
single-loop stochastic helpers (``single_loop``), recursive variance-reduced estimators
(``recursive``) and the black-box baseline (``blackbox``). Built on contracts and autodiff.
"""
