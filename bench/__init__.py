"""Benchmarks: `make bench`. They print figures and ratios; they never assert on time."""
