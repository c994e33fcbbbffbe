"""``--set KEY=VALUE``: the one way a command line overrides a setting, in the ``mrisr`` command, the notebook runner
and the benchmarks. What a key may be, and what its value must be, is checked where it lands (`ExperimentConfig`, a
notebook's parameters, a benchmark's sizes)."""

from __future__ import annotations

import argparse
import json


def setting(text: str) -> tuple[str, object]:
    """One ``KEY=VALUE`` as ``(KEY, value)``: VALUE is read as JSON where it parses (``3``, ``1e-3``, ``null``,
    ``true``, ``[16, 32]``), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_set_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--set KEY=VALUE`` (repeatable) on ``parser``, overriding ``what``; ``dict(args.set)`` holds them."""
    parser.add_argument("--set", type=setting, action="append", default=[], metavar="KEY=VALUE",
                        help=f"replace {what} (VALUE read as JSON where it parses: --set epochs=3 --set "
                             f"patch_size=[16,32,32]); repeatable")
