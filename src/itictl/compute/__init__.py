"""Compute helpers shared by the steps: batching and padding, tree packing, data parallelism (torchrun)."""
