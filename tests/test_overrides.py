"""``--set KEY=VALUE``: one parser for the mrisr command, the notebook runner and the benchmarks."""

from __future__ import annotations

import argparse

import pytest

from mrisr.overrides import add_set_option, setting
from mrisr.training.config import ExperimentConfig


def test_values_are_json_where_they_parse_else_strings():
    assert setting("patch_size=[16, 32, 32]") == ("patch_size", [16, 32, 32])
    assert setting("lr_max=null") == ("lr_max", None) and setting("augment=false") == ("augment", False)
    assert setting("epochs=3") == ("epochs", 3) and setting("lr_max=1e-3") == ("lr_max", 1e-3)
    assert setting("run_dir=runs/a=b") == ("run_dir", "runs/a=b")  # only the first = splits
    for bad in ("epochs", "=3"):
        with pytest.raises(argparse.ArgumentTypeError, match="takes KEY=VALUE"):
            setting(bad)


def test_overrides_land_in_the_config_and_its_checks():
    parser = argparse.ArgumentParser()
    add_set_option(parser, "a config field")
    args = parser.parse_args(["--set", "epochs=3", "--set", "patch_size=[8,16,16]"])
    config = ExperimentConfig().updated(dict(args.set))
    assert config.epochs == 3 and config.patch_size == [8, 16, 16] and config.n_feats == ExperimentConfig().n_feats
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        ExperimentConfig().updated({"epochs": 0})
    with pytest.raises(ValueError, match=r"unknown config keys \['epoch'\]"):
        ExperimentConfig().updated({"epoch": 3})
