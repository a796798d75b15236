"""Benchmarks of minidl (not part of the installed package; run from a clone).

    python -m benchmarks.step          # training step: minidl on NumPy vs the same net in PyTorch, CPU
"""
