"""Reads records, never runs cells: results tables (``results``), honest ranks and number
formats (``ranks``), leaderboard pages (``leaderboard``), figures (``plots``) and the static
HTML site (``site``).
"""
