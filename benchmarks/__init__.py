"""Overhead benchmark: what one traced event costs the application, against the peers.

Run ``python -m benchmarks.run`` from the repository root (``--quick`` for a smoke run).
"""
