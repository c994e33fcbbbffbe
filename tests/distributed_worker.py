"""One process of a data-parallel run for tests/test_distributed.py, launched by torchrun: trains the config in
``argv[1]`` and writes what this rank saw to ``argv[2]/rank<R>.json``. With ``argv[3] == "fail"`` it runs
``mrisr train`` instead, and rank 1 raises in its second epoch; with ``"resume"`` it continues from the run's
``last.pth``."""

import json
import os
import sys
from pathlib import Path

from fastai.callback.core import Callback

from mrisr.training.config import ExperimentConfig
from mrisr.training.train import fit, sr_learner


class SeenPatches(Callback):
    """A fingerprint (the sum) of every training batch this process trains on."""

    def before_fit(self):
        self.sums = []

    def before_batch(self):
        if self.training:
            self.sums.append(round(float(self.yb[0].sum()), 4))


class FailSecondEpoch(Callback):
    def before_epoch(self):
        if self.epoch == 1:
            raise ValueError("this rank was told to fail")


if sys.argv[3:] == ["fail"]:
    from mrisr.cli import main
    import mrisr.training.train

    make = mrisr.training.train.sr_learner
    if os.environ["RANK"] == "1":
        mrisr.training.train.sr_learner = lambda *a, **k: make(*a, **k).add_cb(FailSecondEpoch())
    sys.exit(main(["train", sys.argv[1]]))

config = ExperimentConfig.from_json(Path(sys.argv[1]).read_text())
learn = sr_learner(config, device="cpu", progress=False, resume=sys.argv[3:] == ["resume"])
seen = SeenPatches()
learn.add_cb(seen)
fit(learn, config)
names = list(learn.recorder.metric_names[1:-1])
best = min(learn.recorder.values, key=lambda v: v[names.index("valid_loss")])
learn.remove_cbs([cb for cb in (seen, getattr(learn, "data_parallel", None), getattr(learn, "reduce_metrics", None))
                  if cb is not None])
alone = learn.validate()  # after the fit: this process alone, on every validation patch, with the best model
mapped = [line.split()[-2] for line in Path("/proc/self/maps").read_text().splitlines() if "mrisr-subjects" in line]
Path(sys.argv[2], f"rank{os.environ['RANK']}.json").write_text(json.dumps(
    {"seen": seen.sums, "logged": dict(zip(names[1:], best[1:])), "alone": dict(zip(names[1:], map(float, alone))),
     "mapped": sorted(set(mapped))}))
