"""mrisr's accuracy studies: scripts that train and score on the real scans and print tables with intervals
(docs/benchmarks.md, docs/training.md). Run them from the repository root as modules, e.g.
``python -m experiments.real_knee --size cpu``. The speed and memory figures are `benchmarks`."""
