"""Amaranth RTL of the weight-stationary systolic-array accelerator and its generator CLI."""
