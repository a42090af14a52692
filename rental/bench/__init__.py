"""Benchmark scripts: each prints its figures as one JSON line; tests never assert on timings."""
