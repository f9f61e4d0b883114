"""``llava-gemma plan`` on a toy study predicts CPU minutes at the toy's measured rate, not device
hours at a Gaudi's peak (which printed 8.49e-07 hours)."""

from __future__ import annotations

import re
from pathlib import Path

from llava_gemma.analysis.planning.plan import TOY_CPU_TFLOPS, run_plan

ROOT = Path(__file__).resolve().parents[1]


def _runs_table(text: str) -> tuple[str, list[list[str]]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = lines[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:] if not line.startswith("|---")]
    return header, [r for r in rows if r[0] and "Memory" not in r[0]][:9]


def test_toy_plan_prints_cpu_minutes():
    text = run_plan([ROOT / "toy.yaml"])
    header, rows = _runs_table(text)
    assert "CPU minutes" in header and "hours" not in header
    total = rows[-1]
    assert total[0] == "**total**"
    flops = float(re.match(r"([\d.e+]+)", total[4]).group(1))
    minutes = float(total[5])
    assert abs(minutes - flops / (TOY_CPU_TFLOPS * 1e12) / 60) < 0.01 * minutes
    # The toy study's training took about 7 minutes on 2 cores: minutes, not millionths of an hour.
    assert 2 < minutes < 30
    assert all(0.1 < float(r[5]) < 10 for r in rows[:-1])


def test_toy_plan_with_a_device_peak_prints_hours():
    header, _ = _runs_table(run_plan([ROOT / "toy.yaml"], peak_tflops=100.0))
    assert "hours on 1 x 100 TFLOP/s" in header
