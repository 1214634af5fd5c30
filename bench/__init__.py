"""Benchmarks of echat: `python -m bench` (see bench/__main__.py) and bench/fixture_ready.py."""
