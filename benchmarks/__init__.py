"""mrisr's benchmarks: scripts that print speed and memory figures (docs/benchmarks.md). Run them from the repository
root as modules, e.g. ``python -m benchmarks.speed --size tiny --json -``. The accuracy studies are `experiments`."""
