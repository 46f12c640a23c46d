"""Benchmarks that print figures (not timed tests): ``make bench`` and ``make bench-full``.

A package so that the harness (``python -m bench.run``) can start each measurement as
``python -m bench.measure ...`` in a fresh process and share code with the scripts beside it.
"""
