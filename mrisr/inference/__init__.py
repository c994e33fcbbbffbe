"""Trained networks applied to whole scans (tiled), and self-supervised super-resolution of one scan."""
