"""Simulated low-resolution acquisitions (one step per physical effect, chained into a `Degradation`) and data
consistency with them."""
