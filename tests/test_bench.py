"""The speed harness (`benchmarks.speed`): it runs end to end and emits valid JSON and Markdown; its
FLOP count and timer do what they say; the accuracy section works on the real knee. No timed assertions."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from benchmarks.common import time_steps
from benchmarks.settings import CPU_VARIANTS, NAIVE, SIZES, Variant, backend
from benchmarks.speed import main as speed_main
from benchmarks.speed_inference import accuracy_section
from benchmarks.speed_train import step_flops
from mrisr.errors import UsageError
from mrisr.networks.models import EDSR3D


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_bench_command_writes_json_and_appends_markdown(tmp_path, capsys):
    markdown = tmp_path / "benchmarks.md"
    markdown.write_text("# Benchmarks\n\nearlier figures\n")
    assert speed_main(["--size", "tiny", "--device", "cpu", "--json", str(tmp_path / "b.json"),
                 "--markdown", str(markdown)]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert set(result) - {"skipped"} == {"environment", "peak", "train", "pipeline", "inference", "accuracy"}
    assert result["environment"]["device"].startswith("CPU") and result["environment"]["date"]
    assert all(math.isfinite(x) and x >= 0 for x in _numbers(result))
    train = result["train"]
    bf16_fast = result["peak"]["bf16_tflops"] >= result["peak"]["fp32_tflops"]  # else bf16 steps are skipped
    assert [r["variant"] for r in train["variants"]] == [v.name for v in CPU_VARIANTS
                                                         if not v.compile and (bf16_fast or v.precision != "bf16")]
    assert bf16_fast or all("bf16" in line for line in result["skipped"])
    for row in train["variants"] + train["sweeps"] + result["pipeline"]:
        assert row["patches_per_s"] > 0 and "error" not in row
    assert [r["speedup"] for r in train["variants"]][0] == 1.0
    assert 0 < result["pipeline"][0]["device_busy"] <= 1 and result["pipeline"][0]["loader_ms_per_batch"] > 0
    assert all(r["seconds"] > 0 and r["voxels_per_s"] > 0 for r in result["inference"])
    naive = result["accuracy"]["variants"][0]
    assert naive["variant"] == NAIVE.name and naive["relative_error"] == 0 and naive["psnr_change_db"] == 0
    text = markdown.read_text()
    assert text.startswith("# Benchmarks\n\nearlier figures\n")  # appended, not overwritten
    assert "### Speed benchmark: CPU" in text and "| naive fp32 |" in text and "torch " + torch.__version__ in text
    assert text.count("\n|---") == 5  # train, sweeps, pipeline, inference, accuracy
    assert "### Speed benchmark" in capsys.readouterr().out


def test_step_flops_counts_every_convolution_forward_and_backward():
    model = EDSR3D(n_feats=8, n_blocks=2)
    voxels = 6**3
    macs = 1 * 8 * 27 + 5 * 8 * 8 * 27 + 8 * 1 * 27  # head, 2 blocks x 2 + body conv, tail; per voxel
    # backward: the weight gradient of every conv and the input gradient of all but the head (input needs none)
    expected = (2 * macs + 2 * 2 * macs - 2 * 8 * 27) * voxels * 3
    assert step_flops(model, (3, 1, 6, 6, 6), torch.device("cpu")) == expected


def test_timer_warms_up_then_times_each_repeat():
    calls = []
    seconds = time_steps(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=3, steps_per_repeat=4)
    assert len(calls) == 2 + 3 * 4 and len(seconds) == 3 and all(s >= 0 for s in seconds)


def test_backend_restores_the_global_flags():
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    with backend(Variant("x", "tf32", cudnn_benchmark=not saved[1])):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cudnn.benchmark != saved[1]
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) == saved


def test_accuracy_section_on_the_real_knee(dess_block):
    sizes = dataclasses.replace(SIZES["tiny"], accuracy_shape=(24, 96, 200))
    variants = [NAIVE, Variant("fp32 + channels_last_3d", channels_last=True)]
    result = accuracy_section(sizes, variants, torch.device("cpu"), dess_block)
    assert result["shape"] == [24, 96, 160]  # the central block, at most the size asked for
    assert result["fp32_psnr_db"] != result["input_psnr_db"]  # the briefly trained network changes its input
    naive, channels_last = result["variants"]
    assert naive["relative_error"] == 0 and naive["psnr_change_db"] == 0
    assert channels_last["relative_error"] < 1e-5 and abs(channels_last["psnr_change_db"]) < 1e-3
    assert np.isfinite([r["psnr_db"] for r in result["variants"]]).all()


def test_the_benchmark_never_writes_over_its_input(tmp_path):
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"a scan")
    with pytest.raises(UsageError, match="scan.nii.gz"):
        speed_main(["--size", "tiny", "--volume", str(scan), "--json", str(scan)])
    assert scan.read_bytes() == b"a scan"


def test_sizes_take_overrides_and_name_unknown_ones():
    tiny = SIZES["tiny"].updated({"batch": 3, "tiles": [8]})
    assert tiny.batch == 3 and tiny.tiles == (8,) and tiny.n_feats == SIZES["tiny"].n_feats
    with pytest.raises(ValueError, match=r"unknown benchmark sizes \['batchsize'\]"):
        SIZES["tiny"].updated({"batchsize": 3})
