"""The benchmark scripts run (tiny settings) and print the tables they promise; no speed is asserted here (speed
belongs in the benchmarks' own output)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_norm_speed_cpu_without_compile(tmp_path):
    out = _run(["benchmarks/norm_speed.py", "--device", "cpu", "--no-compile", "--min-run-time", "0.01",
                "--rounds", "2", "--threads", "1"], tmp_path)
    assert "| BatchNorm2d | 32x64x28x28 |" in out and "| RMSNorm | 32x128x256 |" in out
    assert "Achieved bandwidth" in out and "BatchNorm: 3 x and 8 x" in out


def test_compiled_cpu_one_layer(tmp_path):
    report = tmp_path / "out.json"
    out = _run(["benchmarks/compiled_cpu.py", "--layers", "BatchNorm1d", "--rounds", "2", "--min-time", "0.005",
                "--json", str(report)], tmp_path)
    assert "| BatchNorm1d | 256x120 | forward + backward |" in out and "load average before" in out
    data = json.loads(report.read_text())
    row, = data["rows"]
    for key in ("before", "after"):
        assert row[key]["low"] <= row[key]["ratio"] <= row[key]["high"]
    assert set(data["overhead_us"]) == {"eager", "compiled"}
