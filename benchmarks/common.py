"""What every benchmark shares: timing (`time_steps`, `synchronize`, peak memory), the device in words
(`device_name`), and the Markdown report (`markdown_table`, `publish`, `append_markdown`)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mrisr.io.atomic import atomic_path


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], device: torch.device, warmup: int, repeats: int,
               steps_per_repeat: int = 1) -> list[float]:
    """Seconds per call of ``step``, one figure per repeat (each the mean over ``steps_per_repeat`` calls), after
    ``warmup`` untimed calls. CUDA work is bracketed by events; take the median. (Not ``torch.utils.benchmark.Timer``:
    its ``timeit`` adds two untimed calls per repeat, a minute per repeat for a seed-size step on a CPU.)"""
    for _ in range(warmup):
        step()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps_per_repeat):
                step()
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1e3 / steps_per_repeat)
        else:
            begin = time.perf_counter()
            for _ in range(steps_per_repeat):
                step()
            seconds.append((time.perf_counter() - begin) / steps_per_repeat)
    return seconds


def peak_memory_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def device_name(device: str | torch.device) -> str:
    """What a benchmark ran on, in words: the GPU's name, or the CPU's cores and torch threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def markdown_table(rows: Sequence[dict], columns: dict[str, str]) -> str:
    """A Markdown table of ``rows`` with ``columns`` (key -> header); failed rows show their error in the last cell
    (which ``DataFrame.to_markdown``, with its extra tabulate dependency, would not)."""
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [r.get(k, "") for k in columns]
        if "error" in r:
            cells = [r.get(k, "") if k in ("variant", "batch", "patch", "tile", "memory_gb", "settings") else ""
                     for k in columns]
            cells[-1] = r["error"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value else f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def as_percent(rows: Sequence[dict], key: str) -> list[dict]:
    return [{**r, key: f"{r[key]:.1%}"} if key in r else r for r in rows]


def publish(title: str, device, seconds: float, script: str, argv: list[str] | None, notes: str, table: str,
            markdown=None) -> str:
    """Print a benchmark's result as a Markdown section (title, date, device, torch, run time, the command that made
    it, ``notes``, then ``table``) and, when ``markdown`` names a file, append it there. Returns the section."""
    command = " ".join([script, *(argv if argv is not None else sys.argv[1:])])
    text = (f"### {title} ({time.strftime('%Y-%m-%d')})\n\nDevice: {device_name(device)}; torch {torch.__version__}; "
            f"{seconds / 60:.1f} min in all. Command: `{command}`. {notes}\n\n{table}")
    print(text)
    if markdown:
        append_markdown(markdown, text)
        print(f"appended to {markdown}")
    return text


def append_markdown(path, text: str):
    """Append ``text`` to the Markdown file ``path`` (created if missing) without ever leaving it half-written."""
    path = Path(path)
    before = path.read_text() if path.exists() else ""
    with atomic_path(path, path.suffix or ".md") as tmp:
        tmp.write_text(before + ("\n" if before and not before.endswith("\n\n") else "") + text)
    return path
