"""Image arithmetic on arrays and tensors: centred FFTs, separable filters, the foreground, the noise level, quality
metrics, residual spectra."""
