"""mrisr's benchmarks: scripts that print speed, memory and quality figures (docs/benchmarks.md). Run them from the
repository root as modules, e.g. ``python -m benchmarks.speed --preset tiny --json -``."""
