"""Latency/accuracy benchmarks on the device: ``edge-fer bench`` / ``python -m benchmarks``."""
