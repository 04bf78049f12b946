"""scripts/bench_sweep.py: its flags (check_cuda.sh runs it with ``--device cuda --runs 1,4,8``),
their refusals, and one tiny measurement on CPU."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_sweep():
    spec = importlib.util.spec_from_file_location("bench_sweep", ROOT / "scripts" / "bench_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text, counts", [("1,4,8", [1, 4, 8]), ("2", [2]), (" 1, 16 ", [1, 16])])
def test_runs_lists_the_counts_of_runs_at_once(bench_sweep, text, counts):
    assert bench_sweep.parse_run_counts(text) == counts


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--runs", "1,x"], "error: --runs '1,x': use comma-separated counts of runs at once, each >= 1, e.g. 1,4,8"),
        (["--runs", "0,4"], "error: --runs '0,4': use comma-separated counts"),
        (["--runs", ""], "error: --runs '': use comma-separated counts"),
        (["--device", "cuda:1"], "error: --device 'cuda:1': use cpu or cuda (the runs are dealt every GPU, round-robin)"),
        (["--device", "cuda"], "error: --device cuda asked for, but this torch (.*) sees no CUDA GPU; use cpu"),
        (
            ["--steps", "999", "--envs-per-run", "2"],
            "error: --steps 999: a run logs its steps/s every 100 updates of 5 x 2 envs; use at least 1000",
        ),
    ],
)
def test_bad_flags_are_refused_on_one_line(bench_sweep, argv, message, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for measurement in ("raw_ale_rate", "sweep_rate"):
        monkeypatch.setattr(bench_sweep, measurement, lambda *args: pytest.fail(f"{argv} was accepted"))
    assert bench_sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(re.escape(message).replace(re.escape(".*"), ".*") + ".*\n", err), err


def test_cuda_shares_every_gpu_torch_sees(bench_sweep, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert (bench_sweep.gpus_for("cuda"), bench_sweep.gpus_for("cpu")) == (3, 0)


def test_a_tiny_measurement_on_cpu_prints_one_line_per_count(bench_sweep, capsys):
    argv = ["--device", "cpu", "--runs", "1", "--steps", "1000", "--envs-per-run", "2", "--raw-seconds", "0.2"]
    assert bench_sweep.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(" 0 GPUs, torch " + torch.__version__ + "; A2C, 2 envs per run, 1,000 steps per run")
    number = r"[\d,]+"
    line = re.fullmatch(
        rf"K=1 +raw ALE +({number}) steps/s \(2 envs\) \| sweep +({number}) steps/s \(wall clock {number}\) "
        rf"\| ratio ([\d.]+) \| paper comparison ({number}\.\d) h",
        out[1],
    )
    assert line, out[1]
    raw, own, ratio, hours = (float(group.replace(",", "")) for group in line.groups())
    assert raw > 0 and own > 0
    assert ratio == pytest.approx(own / raw, abs=0.01)  # the printed rates are rounded to whole steps/s
    assert hours == pytest.approx(9 * 2 * 5 * 10_000_000 / own / 3600, rel=0.01)
    assert len(out) == 2
