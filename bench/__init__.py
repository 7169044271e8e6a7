"""Benchmarks against the local EKS; `make bench` runs them all (python -m bench.run)."""
