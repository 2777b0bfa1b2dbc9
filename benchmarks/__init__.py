"""Benchmarks (`make bench`, `bench-train`, `bench-fidelity`, `bench-exporter`, `bench-stack`).

They measure the services from outside, so they may import any onebox package;
no service imports them, and they stay out of the image (.dockerignore).
"""
