"""Plan → run a cell → supervise cells → store records: the plugin ``registry``, the bracket
``spec`` syntax, code ``version``s, the cell ``harness`` with its ``metrics`` and ``memory``
probes, the ``runner`` supervising one fork-server child per cell (``lifeline``,
``_forkserver_preload``), the atomic record ``store`` and its ``validate``-ion.
"""
