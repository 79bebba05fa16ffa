"""Helpers of benchmarks/evaluate.py: the plans of every method, and the report."""
