"""One experiment's config, its fastai learner and callbacks, checkpoints, several processes, and the device it runs
on."""
