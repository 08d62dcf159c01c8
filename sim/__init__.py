"""Verilator/cocotb simulation: toolchain set-up, cached model builds, test running."""
