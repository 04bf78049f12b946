import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from rl_coordconv.agents import sweep
from rl_coordconv.commands import sweep as sweep_command
from rl_coordconv.envs import GAMES
from rl_coordconv.rundir import RunState, latest_checkpoint

TINY = ["--set", "a2c.n_envs=2", "--set", "eval_episodes=0", "--set", "checkpoint_every=100", "--max-parallel", "2"]


def test_dry_run_prints_one_train_command_per_run(tmp_path, capsys):
    code = sweep_command.main(
        [
            "--games",
            "MsPacman,Breakout",
            "--archs",
            "conv,coordconv",
            "--seeds",
            "0-1",
            "--timesteps",
            "300k",
            "--runs",
            str(tmp_path),
            "--dry-run",
            "--set",
            "a2c.n_envs=8",
        ]
    )
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("rl-coordconv train ")]
    expected = {(game, arch, seed) for game in ("MsPacman", "Breakout") for arch in ("conv", "coordconv") for seed in (0, 1)}
    assert {
        (line.split("--game ")[1].split()[0], line.split("--arch ")[1].split()[0], int(line.split("--seed ")[1].split()[0]))
        for line in lines
    } == expected
    assert all("--timesteps 300000" in line and "--set=a2c.n_envs=8" in line for line in lines)
    assert not any(tmp_path.iterdir())  # a dry run creates nothing


def test_each_override_reaches_the_runs_of_its_agent_and_the_shared_ones_reach_all():
    jobs = sweep.plan(
        "MsPacman", "a2c,ppo", "conv", "0", "1k", "runs", overrides=["eval_episodes=0", "ppo.n_steps=64", "a2c.n_envs=8"]
    )
    a2c, ppo = jobs
    assert (a2c.config.eval_episodes, a2c.config.a2c.n_envs, a2c.config.ppo.n_steps) == (0, 8, 128)  # PPO's own n_steps
    assert (ppo.config.eval_episodes, ppo.config.ppo.n_steps, ppo.config.a2c.n_envs) == (0, 64, 16)  # A2C's own n_envs
    assert [item for item in a2c.argv if item.startswith("--set")] == ["--set=eval_episodes=0", "--set=a2c.n_envs=8"]
    assert [item for item in ppo.argv if item.startswith("--set")] == ["--set=eval_episodes=0", "--set=ppo.n_steps=64"]


def test_paper9_is_the_whole_suite():
    jobs = sweep.plan("paper9", "a2c", "conv,coordconv", "0", "1k", "runs")
    assert [job.config.game for job in jobs] == [game for game in GAMES for _ in ("conv", "coordconv")]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--games", "Pacman"], "unknown game 'Pacman'; choose from: MsPacman, .*paper9"),
        (["--agents", "ppo2"], "unknown agent 'ppo2'; choose from: a2c, ppo, dqn, apex"),
        (["--archs", "conv,coord"], "unknown arch 'coord'"),
        (["--seeds", "3-1"], "bad seed range '3-1'"),
        (["--seeds", "a"], "bad seed range 'a'"),
        (["--set", "apex.batch_size=64"], "a setting of apex, which does not run here \\(the agents are a2c\\)"),
        *[
            (["--set", f"{key}={value}"], f"'{key}={value}': use {option} for the {key}")
            for key, value, option in (
                ("game", "Pong", "--games"),
                ("agent", "ppo", "--agents"),
                ("arch", "conv", "--archs"),
                ("seed", "3", "--seeds"),
                ("timesteps", "5", "--timesteps"),
                ("device", "cpu", "--device"),
            )
        ],
        (["--set", "a2c.n_env=8"], "unknown setting 'a2c.n_env'"),
        (["--set", "a2c.n_envs=0"], "a2c.n_envs must be in \\[1, inf\\), got 0"),
        (["--agents", "apex", "--set", "apex.alpha=2"], "apex.alpha must be in \\[0, 1\\], got 2.0"),
        (["--gpus-per-run", "-1"], "--gpus-per-run must be >= 0, got -1"),
        (["--gpus-per-run", "0.5"], "--gpus-per-run needs --ray-address"),
        (["--ray-address", "local", "--device", "cuda"], "--device cuda on Ray needs --gpus-per-run > 0"),
        (["--ray-address", "headnode"], "--ray-address 'headnode' is not auto, local, HOST:PORT"),
        (["--ray-address", "head:70000"], "--ray-address 'head:70000' is not auto, local, HOST:PORT \\(a port 1-65535\\)"),
    ],
)
def test_bad_grids_are_refused_before_anything_starts(argv, message, tmp_path, capsys, monkeypatch):
    def runs_started(*args):
        raise AssertionError(f"{argv} was accepted and the runs started")

    monkeypatch.setattr(sweep_command, "execute", runs_started)
    defaults = {"--games": "MsPacman", "--timesteps": "1000"}
    given = dict(zip(argv[::2], argv[1::2]))
    command = [item for key, value in {**defaults, **given}.items() for item in (key, value) if key != "--set"]
    command += ["--set", given["--set"]] if "--set" in given else []
    assert sweep_command.main([*command, "--runs", str(tmp_path / "runs")]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_a_dry_run_refuses_a_ray_address_that_is_no_address(tmp_path, capsys):
    argv = ["--games", "MsPacman", "--timesteps", "1000", "--ray-address", ":6379", "--dry-run", "--runs", str(tmp_path)]
    assert sweep_command.main(argv) == 2
    assert "--ray-address ':6379' is not auto, local, HOST:PORT" in capsys.readouterr().err


def test_sweep_runs_skips_resumes_and_survives_a_failing_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    grid = ["--games", "MsPacman", "--archs", "conv,coordconv", "--runs", str(runs), *TINY]

    assert sweep_command.main([*grid, "--seeds", "0", "--timesteps", "200"]) == 0
    conv, coordconv = (runs / "MsPacman" / f"a2c-{arch}" / "seed0" for arch in ("conv", "coordconv"))
    for run_dir in (conv, coordconv):
        assert latest_checkpoint(run_dir).name == "model_200_steps.zip"
        assert "-m rl_coordconv train --game MsPacman" in (run_dir / "train.log").read_text()

    # A run directory that cannot be resumed (it holds another run) fails; the others go on.
    other = runs / "MsPacman" / "a2c-coordconv" / "seed1"
    shutil.copytree(conv, other)
    (other / "checkpoints" / "model_200_steps.zip").unlink()  # interrupted at step 100
    capsys.readouterr()
    assert sweep_command.main([*grid, "--seeds", "0-1", "--timesteps", "200"]) == 1
    out = capsys.readouterr().out
    assert "4 runs: 1 new, 1 to resume, 0 to restart (no checkpoint), 2 finished" in out
    assert "FAILED (exit 2)" in out and "differ from the saved run" in out
    assert latest_checkpoint(runs / "MsPacman" / "a2c-conv" / "seed1").name == "model_200_steps.zip"

    # A longer budget resumes the finished runs from their checkpoints.
    assert sweep_command.main([*grid, "--seeds", "0", "--timesteps", "400"]) == 0
    assert latest_checkpoint(conv).name == latest_checkpoint(coordconv).name == "model_400_steps.zip"
    assert (conv / "train.log").read_text().count("--resume") == 1


FAKE_TRAIN = """
import json, os, signal, sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with open(os.environ["SWEEP_TIMES"], "a") as times:
    times.write(json.dumps({"seed": int(args["--seed"]), "start": time.time(), "cores": sorted(os.sched_getaffinity(0)),
                            "threads": os.environ["OMP_NUM_THREADS"], "device": args["--device"]}) + "\\n")
print("fake training of seed", args["--seed"], flush=True)
time.sleep(0.6)
behaviour = os.environ["SWEEP_BEHAVIOUR"].split(",")[int(args["--seed"])]
with open(os.environ["SWEEP_TIMES"], "a") as times:
    times.write(json.dumps({"seed": int(args["--seed"]), "end": time.time()}) + "\\n")
if behaviour == "ok":
    sys.exit(0)
os.kill(os.getpid(), getattr(signal, behaviour))
"""


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    """sweep.py with a train.py stand-in that records when each run starts and ends, then exits 0
    or dies from a signal, per seed (``SWEEP_BEHAVIOUR``: e.g. "ok,SIGKILL,SIGTERM")."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    times = tmp_path / "times.jsonl"
    monkeypatch.setattr(sweep, "TRAIN_COMMAND", [sys.executable, str(script)])
    monkeypatch.setenv("SWEEP_TIMES", str(times))
    return times


def most_at_once(times_file: Path) -> int:
    """The most runs that were between their start and their end at the same moment."""
    events = [json.loads(line) for line in times_file.read_text().splitlines()]
    edges = sorted((event.get("start", event.get("end")), 1 if "start" in event else -1) for event in events)
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_a_run_killed_by_a_signal_fails_with_its_log_tail(fake_train, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SWEEP_BEHAVIOUR", "ok,SIGKILL,SIGTERM")
    code = sweep_command.main(
        [
            "--games",
            "MsPacman",
            "--archs",
            "conv",
            "--seeds",
            "0-2",
            "--timesteps",
            "1000",
            "--runs",
            str(tmp_path / "runs"),
            "--max-parallel",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    for seed, signal_name in ((1, "SIGKILL"), (2, "SIGTERM")):
        run_dir = tmp_path / "runs" / "MsPacman" / "a2c-conv" / f"seed{seed}"
        assert f"FAILED (killed by {signal_name}): {run_dir}\n" in out
        assert f"fake training of seed {seed}" in out.split(f"FAILED (killed by {signal_name})")[1]  # its log tail
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2 and not any(line.endswith("seed0") for line in failed)
    assert "1 of 3 runs finished, 2 failed" in out


def test_max_parallel_bounds_the_runs_at_once(fake_train, tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_BEHAVIOUR", ",".join(["ok"] * 5))
    for bound in (1, 2):
        fake_train.unlink(missing_ok=True)
        assert (
            sweep_command.main(
                [
                    "--games",
                    "MsPacman",
                    "--archs",
                    "conv",
                    "--seeds",
                    "0-4",
                    "--timesteps",
                    "1000",
                    "--runs",
                    str(tmp_path / f"runs{bound}"),
                    "--max-parallel",
                    str(bound),
                ]
            )
            == 0
        )
        assert most_at_once(fake_train) == bound  # reached, never passed


@pytest.mark.parametrize(
    "cores, gpus, threads, runs_per_gpu, expected",
    [
        (2, 0, 1, None, [((0,), "cpu"), ((1,), "cpu")]),  # this project's machine: two runs of one thread
        (2, 0, 2, None, [((0, 1), "cpu")]),
        (5, 0, 2, None, [((0, 1), "cpu"), ((2, 3), "cpu")]),  # the odd core stays free
        (
            16,
            1,
            1,
            4,
            [((0, 1, 2, 3), "cuda:0"), ((4, 5, 6, 7), "cuda:0"), ((8, 9, 10, 11), "cuda:0"), ((12, 13, 14, 15), "cuda:0")],
        ),
        (8, 2, 1, 2, [((0, 1), "cuda:0"), ((2, 3), "cuda:1"), ((4, 5), "cuda:0"), ((6, 7), "cuda:1")]),
        (4, 1, 1, None, [((0,), "cuda:0"), ((1,), "cuda:0"), ((2,), "cuda:0"), ((3,), "cuda:0")]),  # a run per core
        (4, 2, 1, None, [((0,), "cuda:0"), ((1,), "cuda:1"), ((2,), "cuda:0"), ((3,), "cuda:1")]),
    ],
)
def test_placement_packs_runs_onto_the_machine(cores, gpus, threads, runs_per_gpu, expected):
    slots = sweep.placement(list(range(cores)), gpus, threads, runs_per_gpu)
    assert [(slot.cores, slot.device) for slot in slots] == expected
    given = [core for slot in slots for core in slot.cores]
    assert len(given) == len(set(given)) <= cores  # no core twice
    assert sum(slot.threads for slot in slots) <= cores and all(slot.threads == len(slot.cores) for slot in slots)


@pytest.mark.parametrize(
    "cores, gpus, threads, runs_per_gpu, message",
    [
        (4, 1, 1, 5, "5 runs per GPU x 1 GPUs = 5 runs, more than the 4 cores"),
        (2, 0, 3, None, "--threads 3 is more than the 2 cores"),
        (2, 0, 1, 2, "--runs-per-gpu needs a GPU"),
    ],
)
def test_placements_that_cannot_fit_are_refused(cores, gpus, threads, runs_per_gpu, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sweep.placement(list(range(cores)), gpus, threads, runs_per_gpu)


def test_a_run_started_by_the_sweep_runs_in_its_slot(fake_train, tmp_path, monkeypatch, capsys):
    cores = sweep.machine_cores()
    monkeypatch.setenv("SWEEP_BEHAVIOUR", ",".join(["ok"] * 4))
    assert (
        sweep_command.main(
            [
                "--games",
                "MsPacman",
                "--archs",
                "conv",
                "--seeds",
                "0-3",
                "--timesteps",
                "1000",
                "--runs",
                str(tmp_path / "runs"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    slots = sweep.placement(cores, 0, 1)
    assert f"{len(slots)} at once, each in a slot of its own: core {cores[0]}, cpu, 1 thread" in capsys.readouterr().out
    starts = [json.loads(line) for line in fake_train.read_text().splitlines() if "start" in line]
    assert len(starts) == 4
    assert all(len(start["cores"]) == 1 and start["cores"][0] in cores and start["threads"] == "1" for start in starts)
    assert {start["cores"][0] for start in starts} == set(cores[: len(slots)])  # every slot used
    # Runs at the same time never share a core: each holds its slot from its start to its end.
    events = sorted(
        (json.loads(line) for line in fake_train.read_text().splitlines()),
        key=lambda event: event.get("start", event.get("end")),
    )
    holding = {}
    for event in events:
        if "start" in event:
            assert event["cores"][0] not in holding.values()
            holding[event["seed"]] = event["cores"][0]
        else:
            holding.pop(event["seed"])


def test_a_gpu_slot_gives_an_auto_device_run_its_gpu(fake_train, tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_BEHAVIOUR", "ok,ok")
    launcher = sweep.LocalLauncher([sweep.Slot((sweep.machine_cores()[0],), "cuda:1")])
    for seed, device in ((0, "auto"), (1, "cpu")):  # a device asked for is kept
        job = sweep.SweepJob(
            None, tmp_path / f"seed{seed}", "new", [*sweep.TRAIN_COMMAND, "--seed", str(seed), "--device", device]
        )
        launcher.start(job)
        job.process.wait()
        assert launcher.wait([job], 0) == [job] and job.returncode == 0
    devices = [json.loads(line)["device"] for line in fake_train.read_text().splitlines() if "start" in line]
    assert devices == ["cuda:1", "cpu"]


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """torch sees two CUDA GPUs; the sweep runs on the first two cores of this machine."""
    cores = sweep.machine_cores()
    if len(cores) < 2:
        pytest.skip("needs two cores, one per run")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(sweep_command, "machine_cores", lambda: cores[:2])
    return cores[:2]


@pytest.mark.parametrize(
    "device, runs_per_gpu, devices, devices_line",
    [
        ("cuda", [], ["cuda:0", "cuda:1"], "--device cuda: each run on the GPU of the slot it starts in (cuda:0, cuda:1)"),
        ("auto", [], ["cuda:0", "cuda:1"], "--device auto: each run on the GPU of the slot it starts in (cuda:0, cuda:1)"),
        ("cuda:1", ["--runs-per-gpu", "2"], ["cuda:1", "cuda:1"], "--device cuda:1: every run on cuda:1"),
        ("cpu", [], ["cpu", "cpu"], None),
    ],
)
def test_a_local_sweep_deals_each_run_its_gpu(
    device, runs_per_gpu, devices, devices_line, two_fake_gpus, fake_train, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SWEEP_BEHAVIOUR", "ok,ok")
    first, second = two_fake_gpus
    assert (
        sweep_command.main(
            [
                "--games",
                "MsPacman",
                "--archs",
                "conv",
                "--seeds",
                "0-1",
                "--timesteps",
                "1000",
                "--runs",
                str(tmp_path / "runs"),
                "--device",
                device,
                *runs_per_gpu,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        f"2 at once, each in a slot of its own: core {first}, {devices[0]}, 1 thread; core {second}, {devices[1]}, 1 thread\n"
    ) in out
    assert (devices_line in out) if devices_line else ("--device" not in out)
    starts = sorted(
        (json.loads(line) for line in fake_train.read_text().splitlines() if "start" in line), key=lambda start: start["seed"]
    )
    assert [start["device"] for start in starts] == devices  # seed 0 starts in the first slot, seed 1 in the second


@pytest.mark.parametrize(
    "device, runs_per_gpu, expected",
    [  # 4 cores, 2 GPUs
        ("cuda", None, [((0,), "cuda:0"), ((1,), "cuda:1"), ((2,), "cuda:0"), ((3,), "cuda:1")]),  # a run per core
        ("auto", 1, [((0, 1), "cuda:0"), ((2, 3), "cuda:1")]),
        ("cuda:1", 2, [((0, 1), "cuda:1"), ((2, 3), "cuda:1")]),
        ("cuda:0", None, [((0,), "cuda:0"), ((1,), "cuda:0"), ((2,), "cuda:0"), ((3,), "cuda:0")]),
        ("cuda:1", 4, [((0,), "cuda:1"), ((1,), "cuda:1"), ((2,), "cuda:1"), ((3,), "cuda:1")]),
        ("cpu", None, [((0,), "cpu"), ((1,), "cpu"), ((2,), "cpu"), ((3,), "cpu")]),
    ],
)
def test_local_slots_put_the_runs_on_the_gpus_their_device_names(device, runs_per_gpu, expected):
    slots = sweep.local_slots(device, [0, 1, 2, 3], 2, 1, runs_per_gpu)
    assert [(slot.cores, slot.device) for slot in slots] == expected


def test_an_explicit_gpu_packs_no_more_runs_than_cores():
    with pytest.raises(ValueError, match=re.escape("5 runs per GPU x 1 GPUs = 5 runs, more than the 4 cores")):
        sweep.local_slots("cuda:1", [0, 1, 2, 3], 2, 1, 5)


def test_runs_per_gpu_with_a_cpu_device_is_refused():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "--runs-per-gpu packs runs onto GPUs, and --device cpu uses none; use --device auto, cuda or cuda:<index>"
        ),
    ):
        sweep.local_slots("cpu", [0, 1], 2, 1, 2)


@pytest.mark.parametrize("device", ["cuda:1", "cuda:0", "cpu:0"])
def test_a_ray_sweep_refuses_an_explicit_device_index_before_anything_starts(
    device, two_fake_gpus, tmp_path, monkeypatch, capsys
):
    def ray_started(*args):
        raise AssertionError(f"--device {device} was accepted and Ray started")

    monkeypatch.setattr(sweep_command, "ray_for_runs", ray_started)
    code = sweep_command.main(
        [
            "--games",
            "MsPacman",
            "--timesteps",
            "1000",
            "--runs",
            str(tmp_path / "runs"),
            "--ray-address",
            "local",
            "--gpus-per-run",
            "1",
            "--device",
            device,
            "--dry-run",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"error: --device {device!r} cannot be used with --ray-address: Ray shows each task only the GPUs it "
        "reserved, numbered from cuda:0; use auto, cuda, cpu\n"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("device", ["cuda", "auto", "cpu"])
def test_a_ray_sweep_accepts_auto_cuda_and_cpu(device, two_fake_gpus, tmp_path, capsys):
    code = sweep_command.main(
        [
            "--games",
            "MsPacman",
            "--timesteps",
            "1000",
            "--runs",
            str(tmp_path / "runs"),
            "--ray-address",
            "local",
            "--gpus-per-run",
            "1",
            "--device",
            device,
            "--dry-run",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert f"--device {device} " in capsys.readouterr().out


def test_a_run_that_died_before_its_first_checkpoint_starts_afresh(tmp_path, capsys):
    runs = tmp_path / "runs"
    grid = [
        "--games",
        "MsPacman",
        "--archs",
        "conv,coordconv",
        "--runs",
        str(runs),
        *TINY,
        "--seeds",
        "0",
        "--timesteps",
        "200",
    ]
    assert sweep_command.main(grid) == 0
    conv, coordconv = (runs / "MsPacman" / f"a2c-{arch}" / "seed0" for arch in ("conv", "coordconv"))
    # conv died before its first checkpoint; coordconv was killed while writing it.
    shutil.rmtree(conv / "checkpoints")
    for path in (coordconv / "checkpoints").iterdir():
        path.write_bytes(path.read_bytes()[:1000])
    assert {path.name for path in conv.iterdir()} == {"config.json", "tb", "train.log"}
    capsys.readouterr()
    assert sweep_command.main(grid) == 0
    assert "2 runs: 0 new, 0 to resume, 2 to restart (no checkpoint), 0 finished" in capsys.readouterr().out
    for run_dir in (conv, coordconv):
        assert latest_checkpoint(run_dir).name == "model_200_steps.zip"
        assert (run_dir / "train.log").read_text().count("rl_coordconv train") == 1  # a fresh start, not a resume
        assert "--resume" not in (run_dir / "train.log").read_text()


def test_a_background_sweep_killed_interrupts_its_runs_and_resumes(tmp_path, capsys):
    """A sweep started as a script's background job (SIGINT ignored) and then ``kill``ed (SIGTERM to
    the sweep alone) stops its runs the way Ctrl-C does: each saves a checkpoint, and the same
    command resumes them."""
    runs = tmp_path / "runs"
    grid = ["--games", "MsPacman", "--archs", "conv", "--seeds", "0", "--timesteps", "1M", "--runs", str(runs), *TINY]
    run_dir = runs / "MsPacman" / "a2c-conv" / "seed0"
    process = subprocess.Popen(
        [sys.executable, "-m", "rl_coordconv", "sweep", *grid],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert wait_until(lambda: (run_dir / "checkpoints" / "model_100_steps.zip").exists(), 180)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # any run the sweep left behind
    assert process.returncode == 130, output[-3000:]
    assert "Interrupted: running runs saved a checkpoint" in output
    stopped_at = int(re.search(r"Interrupted at ([\d,]+) steps", (run_dir / "train.log").read_text())[1].replace(",", ""))
    assert latest_checkpoint(run_dir).name == f"model_{stopped_at}_steps.zip"
    assert sweep_command.main([*grid, "--dry-run"]) == 0
    assert "1 runs: 0 new, 1 to resume" in capsys.readouterr().out


# Sweeps on a local Ray (``--ray-address local``): each run is a Ray task running the same train.py command.


@pytest.fixture
def ray_sweep_dir(tmp_path, monkeypatch):
    """A working directory for a Ray sweep: every process it starts (Ray's daemons and workers, train.py)
    inherits it, which tells the test whether any was left behind."""
    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def processes_started_in(directory: Path) -> dict[int, str]:
    """Pid -> command line of every process but this one whose working directory is ``directory`` (Linux /proc)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if os.readlink(proc / "cwd") == str(directory.resolve()):
                    found[int(proc.name)] = (proc / "cmdline").read_text(errors="replace").replace("\0", " ")
            except OSError:  # gone meanwhile, or another user's
                pass
    return found


def assert_ray_is_gone(directory: Path) -> None:
    import ray

    assert not ray.is_initialized()
    assert processes_started_in(directory) == {}


def test_ray_sweep_runs_skips_resumes_and_survives_a_failing_run(ray_sweep_dir, capsys):
    runs = ray_sweep_dir / "runs"
    grid = ["--games", "MsPacman", "--archs", "conv,coordconv", "--runs", str(runs), *TINY, "--ray-address", "local"]

    assert sweep_command.main([*grid, "--seeds", "0", "--timesteps", "200"]) == 0
    assert_ray_is_gone(ray_sweep_dir)
    conv, coordconv = (runs / "MsPacman" / f"a2c-{arch}" / "seed0" for arch in ("conv", "coordconv"))
    for run_dir in (conv, coordconv):
        assert latest_checkpoint(run_dir).name == "model_200_steps.zip"
        assert (run_dir / "train.log").read_text().count("rl_coordconv train") == 1

    # Finished runs are skipped; a run that cannot be resumed (it holds another run) fails; the others go on.
    other = runs / "MsPacman" / "a2c-coordconv" / "seed1"
    shutil.copytree(conv, other)
    (other / "checkpoints" / "model_200_steps.zip").unlink()  # interrupted at step 100
    capsys.readouterr()
    assert sweep_command.main([*grid, "--seeds", "0-1", "--timesteps", "200"]) == 1
    assert_ray_is_gone(ray_sweep_dir)
    out = capsys.readouterr().out
    assert "4 runs: 1 new, 1 to resume, 0 to restart (no checkpoint), 2 finished" in out
    assert "FAILED (exit 2)" in out and "differ from the saved run" in out  # the tail of its train.log
    assert "3 of 4 runs finished, 1 failed" in out
    assert latest_checkpoint(runs / "MsPacman" / "a2c-conv" / "seed1").name == "model_200_steps.zip"
    assert (conv / "train.log").read_text().count("rl_coordconv train") == 1  # not started again

    # A longer budget resumes the finished runs from their checkpoints.
    assert sweep_command.main([*grid, "--seeds", "0", "--timesteps", "400"]) == 0
    assert_ray_is_gone(ray_sweep_dir)
    assert latest_checkpoint(conv).name == latest_checkpoint(coordconv).name == "model_400_steps.zip"
    assert (conv / "train.log").read_text().count("--resume") == 1


def test_ctrl_c_on_a_ray_sweep_saves_checkpoints_and_leaves_no_process(ray_sweep_dir, capsys):
    runs = ray_sweep_dir / "runs"
    grid = [
        "--games",
        "MsPacman",
        "--archs",
        "conv,coordconv",
        "--seeds",
        "0",
        "--timesteps",
        "1M",
        "--runs",
        str(runs),
        *TINY,
        "--ray-address",
        "local",
    ]
    first_checkpoints = [
        runs / "MsPacman" / f"a2c-{arch}" / "seed0" / "checkpoints" / "model_100_steps.zip" for arch in ("conv", "coordconv")
    ]
    sweep_returned = threading.Event()

    def press_ctrl_c_once_both_runs_learn() -> None:
        deadline = time.monotonic() + 120
        while not all(path.exists() for path in first_checkpoints) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not sweep_returned.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c_once_both_runs_learn, daemon=True).start()
    try:
        code = sweep_command.main(grid)
    finally:
        sweep_returned.set()
    assert code == 130
    assert_ray_is_gone(ray_sweep_dir)
    for path in first_checkpoints:
        assert "Interrupted at" in (path.parents[1] / "train.log").read_text()
    capsys.readouterr()
    assert sweep_command.main([*grid, "--dry-run"]) == 0
    assert "2 runs: 0 new, 2 to resume" in capsys.readouterr().out


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("PPid:")[1].split()[0])


def wait_until(condition, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def test_a_ray_task_that_is_killed_takes_its_run_down(ray_sweep_dir):
    """Whether Ray force-cancels the task or its worker dies (SIGKILL: out of memory, ...), its run stops too."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        launcher = sweep.RayLauncher(ray, threads=1, gpus=0)
        sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
        cancelled, crashed = (
            sweep.SweepJob(None, ray_sweep_dir / name, "new", [*sleep, name]) for name in ("cancelled", "crashed")
        )
        for run in (cancelled, crashed):
            launcher.start(run)

        def sleeper(name: str) -> int | None:
            found = [pid for pid, command in processes_started_in(ray_sweep_dir).items() if command.endswith(f" {name} ")]
            return found[0] if found else None

        assert wait_until(lambda: sleeper("cancelled") and sleeper("crashed"))
        sleepers = [sleeper("cancelled"), sleeper("crashed")]
        ray.cancel(cancelled.task, force=True)
        os.kill(parent_of(sleepers[1]), signal.SIGKILL)  # its Ray worker
        assert wait_until(lambda: len(launcher.wait([cancelled, crashed], 0.1)) == 2)
        # A force-cancelled worker first SIGKILLs its children (Ray's kill_child_processes_on_worker_exit),
        # then exits: the task either dies with the worker (TaskCancelledError), or returns the
        # child's -9 just before, when its wait() wakes first. Both are Ray's race; both fail the run.
        assert sweep.has_failed(cancelled)
        assert sweep.failure(cancelled) in ("Ray task failed: TaskCancelledError", "killed by SIGKILL")
        assert sweep.failure(crashed).startswith("Ray task failed: WorkerCrashedError")
        assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in sleepers), seconds=5)
    finally:
        ray.shutdown()
    assert_ray_is_gone(ray_sweep_dir)


def test_a_ray_sweep_whose_runs_fit_no_node_is_refused(ray_sweep_dir, capsys):
    code = sweep_command.main(
        [
            "--games",
            "MsPacman",
            "--seeds",
            "0",
            "--timesteps",
            "200",
            "--runs",
            str(ray_sweep_dir / "runs"),
            "--threads",
            "64",
            "--ray-address",
            "local",
        ]
    )
    assert code == 2
    assert "each run asks for 64 CPUs (--threads) and 0 GPUs (--gpus-per-run), but no node" in capsys.readouterr().err
    assert not (ray_sweep_dir / "runs").exists()
    assert_ray_is_gone(ray_sweep_dir)


def test_a_ray_sweep_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = sweep_command.main(
        [
            "--games",
            "MsPacman",
            "--seeds",
            "0",
            "--timesteps",
            "200",
            "--runs",
            str(tmp_path / "runs"),
            "--ray-address",
            "auto",
        ]
    )
    assert code == 2
    assert (
        "--ray-address needs Ray, which is not installed; install it with: pip install -e .[distributed]"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "runs").exists()


def test_the_grid_is_planned_seed_major(tmp_path):
    jobs = sweep.plan("MsPacman,Breakout", "a2c", "conv,coordconv", "0-1", "1k", tmp_path)
    assert [(job.config.seed, job.config.game, job.config.arch) for job in jobs] == [
        (0, "MsPacman", "conv"),
        (0, "MsPacman", "coordconv"),
        (0, "Breakout", "conv"),
        (0, "Breakout", "coordconv"),
        (1, "MsPacman", "conv"),
        (1, "MsPacman", "coordconv"),
        (1, "Breakout", "conv"),
        (1, "Breakout", "coordconv"),
    ]


def test_a_run_trained_to_its_steps_but_not_evaluated_is_resumed_to_evaluate_it(tmp_path):
    run_dir = tmp_path / "MsPacman" / "a2c-conv" / "seed0"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(
        json.dumps({"config": {"game": "MsPacman", "agent": "a2c", "arch": "conv", "seed": 0}})
    )
    with zipfile.ZipFile(run_dir / "checkpoints" / "model_1000_steps.zip", "w") as checkpoint:
        checkpoint.writestr("data", "{}")
    (job,) = sweep.plan("MsPacman", "a2c", "conv", "0", "1000", tmp_path)  # the default eval_episodes, 10
    assert job.state == RunState.RESUMABLE and "--resume" in job.argv


class RecordingRay:
    """A stand-in for the ``ray`` module: records the options a remote function is given."""

    def __init__(self):
        self.options = None

    def remote(self, function):
        ray = self

        class Remote:
            def options(self, **options):
                ray.options = options
                return self

        return Remote()


def test_each_ray_task_asks_for_the_runs_threads_and_gpus_and_is_not_retried():
    ray = RecordingRay()
    sweep.RayLauncher(ray, threads=4, gpus=0.5)
    assert ray.options == {"num_cpus": 4, "num_gpus": 0.5, "max_retries": 0}


def test_a_sweep_on_ray_starts_it_quiet_and_checks_a_node_fits_a_run(monkeypatch):
    started, checked = [], []
    monkeypatch.setattr(sweep, "require_ray", lambda purpose: "the ray module")
    monkeypatch.setattr(sweep, "start_ray", lambda address, **options: started.append((address, options)) or True)
    monkeypatch.setattr(sweep, "check_cluster_fits", lambda ray, cpus, gpus: checked.append((ray, cpus, gpus)))
    assert sweep.ray_for_runs("local", 4, 0.5) == "the ray module"
    assert started == [("local", {"quiet": True})] and checked == [("the ray module", 4, 0.5)]
