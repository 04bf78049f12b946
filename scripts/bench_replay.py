"""Prioritized replay: memory per transition and sampling speed, measured side by side in one run.

1. Memory: in a fresh subprocess each, the RSS growth of our PrioritizedReplayBuffer and of SB3's
   ReplayBuffer(optimize_memory_usage=True, handle_timeout_termination=False) holding
   ``--rss-capacity`` (4, 84, 84) transitions over ``--rss-envs`` envs, filled through ``add``
   with a synthetic Atari-like stream (games of 3 lives of 50-250 steps, life losses reported as
   done while the frame stack goes on, zero-padded stacks at each new game). Our buffer is filled
   past its capacity, so both rings wrap and every page is touched: the figure is what a full
   buffer costs.
2. Speed at ``--capacity`` transitions (32 envs, (4, 84, 84)), filled completely through ``add``
   with the same stream, one thread: ``sample(512)`` (stacks rebuilt, n-step returns, weights) +
   ``update_priorities``; the sum-tree part alone (stratified draw, IS weights, update); a
   per-item Python sum tree (the algorithm of SB3's open PER pull request: a Python ``retrieve``
   per sampled item, a Python ``update`` per item walking up the tree) at the same capacity; and
   torchrl's C++ ``PrioritizedSampler`` when torchrl is installed and loads. Variants are
   interleaved in each round; the median over rounds is reported, ratios within a round.

    python scripts/bench_replay.py [--capacity 1000000] [--rounds 15] [--rss-capacity 200000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from gymnasium import spaces

from rl_coordconv.agents.replay import PrioritizedReplayBuffer, SumTree
from rl_coordconv.agents.replay.sampler import stratified_sample

ATARI = spaces.Box(0, 255, (4, 84, 84), np.uint8)
ACTIONS = spaces.Discrete(9)
BATCH = 512


class SyntheticAtariStream:
    """``n_envs`` Atari-like streams of (4, 84, 84) frame stacks, as SB3's loop hands them to
    ``add``: games of 3 lives, each life 50-250 steps; a life loss is ``done`` and the stack goes
    on; at game over ``next_obs`` is the last stack and the next ``obs`` a new zero-padded one.
    Frames are drawn from a bank of random images (cheap to produce, not compressible)."""

    def __init__(self, n_envs: int, seed: int = 0) -> None:
        self.n_envs = n_envs
        self.rng = np.random.default_rng(seed)
        self.bank = self.rng.integers(1, 256, size=(512, 84, 84), dtype=np.uint8)
        self.obs = np.zeros((n_envs, 4, 84, 84), dtype=np.uint8)
        self.obs[:, -1] = self._frames(n_envs)
        self.lives = np.full(n_envs, 3)
        self.life_steps = self.rng.integers(50, 250, size=n_envs)

    def _frames(self, count: int) -> np.ndarray:
        return self.bank[self.rng.integers(0, len(self.bank), size=count)]

    def step(self):
        n = self.n_envs
        obs = self.obs
        next_obs = np.concatenate([obs[:, 1:], self._frames(n)[:, None]], axis=1)
        self.life_steps -= 1
        dones = self.life_steps == 0
        self.lives -= dones
        game_over = dones & (self.lives == 0)
        self.life_steps[dones] = self.rng.integers(50, 250, size=int(dones.sum()))
        self.lives[game_over] = 3
        self.obs = next_obs.copy()
        if game_over.any():
            self.obs[game_over] = 0
            self.obs[game_over, -1] = self._frames(int(game_over.sum()))
        actions = self.rng.integers(0, 9, size=n)
        rewards = (self.rng.random(n) < 0.1).astype(np.float32)
        return obs, next_obs, actions, rewards, dones, [{} for _ in range(n)]


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def rss_child(kind: str, capacity: int, n_envs: int) -> None:
    """Runs in a fresh interpreter: prints JSON with the RSS growth of one filled buffer."""
    from stable_baselines3.common.buffers import ReplayBuffer

    stream = SyntheticAtariStream(n_envs, seed=1)
    stream.step()  # warm up numpy's allocations before the baseline
    before = rss_bytes()
    if kind == "ours":
        buffer = PrioritizedReplayBuffer(capacity, ATARI, ACTIONS, "cpu", n_envs, n_steps=3, seed=0)
        adds = int(1.25 * capacity) // n_envs  # past capacity: both rings wrap, every page touched
    else:
        buffer = ReplayBuffer(
            capacity, ATARI, ACTIONS, "cpu", n_envs, optimize_memory_usage=True, handle_timeout_termination=False
        )
        adds = capacity // n_envs
    start = time.perf_counter()
    for _ in range(adds):
        buffer.add(*stream.step())
    seconds = time.perf_counter() - start
    grown = rss_bytes() - before
    result = {"kind": kind, "capacity": capacity, "adds": adds * n_envs, "rss_bytes": grown, "seconds": seconds}
    if kind == "ours":
        result["valid"] = buffer.size()
        result["bytes_needed"] = PrioritizedReplayBuffer.bytes_needed(capacity // n_envs, n_envs, ATARI.shape)
    print(json.dumps(result))


def measure_rss(kind: str, capacity: int, n_envs: int) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--rss-child",
        kind,
        "--rss-capacity",
        str(capacity),
        "--rss-envs",
        str(n_envs),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


class PerItemSumTree:
    """A sum tree walked in Python, one item at a time: the algorithm of SB3's open PER pull
    request (and of most PER tutorials). Heap layout: root 0, children ``2i + 1`` and ``2i + 2``,
    leaf ``k`` at ``capacity - 1 + k``."""

    def __init__(self, leaves: np.ndarray) -> None:
        capacity = len(leaves)
        assert capacity & (capacity - 1) == 0, "a perfect tree keeps the vectorized build below simple"
        self.capacity = capacity
        self.tree = np.zeros(2 * capacity - 1)
        self.tree[capacity - 1 :] = leaves
        level = capacity // 2
        while level >= 1:  # build the internal levels once, bottom-up
            first = level - 1
            self.tree[first : first + level] = (
                self.tree[2 * first + 1 : 2 * first + 1 + 2 * level : 2]
                + self.tree[2 * first + 2 : 2 * first + 2 + 2 * level : 2]
            )
            level //= 2

    def total(self) -> float:
        return self.tree[0]

    def update(self, leaf: int, priority: float) -> None:
        index = leaf + self.capacity - 1
        change = priority - self.tree[index]
        self.tree[index] = priority
        while index != 0:
            index = (index - 1) // 2
            self.tree[index] += change

    def retrieve(self, value: float) -> int:
        index = 0
        while True:
            left = 2 * index + 1
            if left >= len(self.tree):
                return index - (self.capacity - 1)
            if value <= self.tree[left]:
                index = left
            else:
                value -= self.tree[left]
                index = left + 1

    def sample_and_update(self, rng: np.random.Generator, size: int, alpha: float, beta: float) -> None:
        segment = self.total() / BATCH
        leaves, weights = [], []
        for i in range(BATCH):
            leaf = self.retrieve(rng.uniform(segment * i, segment * (i + 1)))
            leaves.append(leaf)
            weights.append((size * self.tree[leaf + self.capacity - 1] / self.total()) ** -beta)
        max_weight = max(weights)
        weights = [w / max_weight for w in weights]
        for leaf, td_error in zip(leaves, rng.random(BATCH)):
            self.update(leaf, (abs(td_error) + 1e-6) ** alpha)


def ours_tree_only(tree: SumTree, rng: np.random.Generator, size: int, alpha: float, beta: float) -> None:
    _, leaves = stratified_sample([tree], BATCH, rng)
    weights = (size * tree.get(leaves) / tree.total) ** -beta
    weights /= weights.max()
    tree.update(leaves, (np.abs(rng.random(BATCH)) + 1e-6) ** alpha)


def make_torchrl_variant(priorities: np.ndarray):
    """torchrl's PrioritizedSampler over the same priorities, or the reason it cannot run."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchrl
            from torchrl.data.replay_buffers.samplers import PrioritizedSampler
            from torchrl.data.replay_buffers.storages import TensorStorage
    except ImportError as error:
        return None, f"torchrl is not installed ({error.msg})"
    try:
        capacity = len(priorities)
        storage = TensorStorage(torch.zeros(capacity, dtype=torch.uint8))
        sampler = PrioritizedSampler(capacity, alpha=0.6, beta=0.4, eps=1e-6, dtype=torch.float64)
        sampler.update_priority(torch.arange(capacity), torch.as_tensor(priorities))
    except Exception as error:  # e.g. its C++ extension built for another torch
        return None, f"torchrl {torchrl.__version__} is installed but its PrioritizedSampler does not run: {error}"

    def step() -> None:
        index, _ = sampler.sample(storage, BATCH)
        sampler.update_priority(index, torch.rand(BATCH, dtype=torch.float64))

    return step, f"torchrl {torchrl.__version__}"


def time_per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def bench_speed(capacity: int, n_envs: int, rounds: int) -> None:
    buffer = PrioritizedReplayBuffer(capacity, ATARI, ACTIONS, "cpu", n_envs, n_steps=3, seed=0)
    stream = SyntheticAtariStream(n_envs, seed=2)
    adds = capacity // n_envs
    start = time.perf_counter()
    for _ in range(adds):
        buffer.add(*stream.step())
    seconds = time.perf_counter() - start
    print(
        f"filled {adds * n_envs:,} transitions through add() ({n_envs} envs; stream generation included) in {seconds:.1f} s: "
        f"{adds * n_envs / seconds:,.0f} transitions/s, {adds / seconds:,.0f} add calls/s; {buffer.size():,} sampleable",
        flush=True,
    )
    rng = np.random.default_rng(0)
    # Spread the priorities as after some learning; the same values seed every tree.
    buffer.update_priorities(np.flatnonzero(buffer.tree.leaf_values() > 0), rng.exponential(1.0, size=buffer.size()))
    size = buffer.size()

    def full() -> None:
        batch = buffer.sample(BATCH)
        buffer.update_priorities(batch.indices, rng.random(BATCH))

    tree = SumTree(buffer.capacity)
    tree.nodes[:] = buffer.tree.nodes
    python_tree = PerItemSumTree(tree.nodes[tree.n_leaves :].copy())
    variants = {
        "full": (full, 20),
        "tree": (lambda: ours_tree_only(tree, rng, size, 0.6, 0.4), 50),
        "python": (lambda: python_tree.sample_and_update(rng, size, 0.6, 0.4), 3),
    }
    torchrl_step, torchrl_note = make_torchrl_variant(tree.nodes[tree.n_leaves : tree.n_leaves + buffer.capacity].copy())
    if torchrl_step is not None:
        variants["torchrl"] = (torchrl_step, 50)
    seconds = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (fn, calls) in variants.items():
            fn()  # warm-up
            seconds[name].append(time_per_call(fn, calls))
    median = {name: statistics.median(values) for name, values in seconds.items()}

    def ratio(slow: str, fast: str) -> float:
        return statistics.median(s / f for s, f in zip(seconds[slow], seconds[fast]))

    print(
        f"ours, sample({BATCH}) with stacks rebuilt + update_priorities: {1e3 * median['full']:7.2f} ms = {1 / median['full']:6.1f} batches/s  (target >= 50/s)"
    )
    print(
        f"ours, sum-tree part alone (stratified draw, IS weights, update): {1e3 * median['tree']:7.3f} ms = {1 / median['tree']:7.1f} batches/s"
    )
    print(
        f"per-item Python sum tree (SB3 PER pull request's algorithm):     {1e3 * median['python']:7.2f} ms = {1 / median['python']:7.1f} batches/s"
    )
    print(f"  ratio per-item Python / ours, sum-tree part: {ratio('python', 'tree'):6.1f}x  (target >= 20x)")
    print(f"  ratio per-item Python tree / ours full sample with stacks rebuilt: {ratio('python', 'full'):5.2f}x")
    if "torchrl" in seconds:
        print(
            f"{torchrl_note} PrioritizedSampler (C++ sum tree), sample + update_priority: {1e3 * median['torchrl']:7.3f} ms = {1 / median['torchrl']:7.1f} batches/s"
        )
        print(f"  ratio torchrl / ours, sum-tree part: {ratio('torchrl', 'tree'):5.2f}x (above 1: ours is faster)")
    else:
        print(f"torchrl row skipped: {torchrl_note}")


def machine_line() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM; torch {torch.__version__} ({torch.get_num_threads()} thread), "
        f"numpy {np.__version__}, Python {platform.python_version()}; {datetime.date.today()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=1_000_000, help="transitions for the speed part (filled completely)")
    parser.add_argument("--envs", type=int, default=32, help="env streams for the speed part")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds; the median is reported")
    parser.add_argument("--rss-capacity", type=int, default=200_000, help="transitions for the memory part")
    parser.add_argument("--rss-envs", type=int, default=8)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--rss-child", choices=("ours", "sb3"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.rss_child:
        rss_child(args.rss_child, args.rss_capacity, args.rss_envs)
        return
    print(f"Prioritized replay, (4, 84, 84) uint8 observations, n_steps 3, batch {BATCH}; {machine_line()}", flush=True)
    if not args.skip_memory:
        ours = measure_rss("ours", args.rss_capacity, args.rss_envs)
        print(
            f"memory, ours: {ours['rss_bytes'] / ours['capacity']:,.0f} bytes/transition from RSS "
            f"({ours['rss_bytes'] / 2**30:.2f} GiB for {ours['capacity']:,} transitions, {args.rss_envs} envs, after {ours['adds']:,} adds "
            f"in {ours['seconds']:.1f} s; {ours['valid']:,} sampleable; computed {ours['bytes_needed'] / ours['capacity']:,.0f} bytes/transition)  (target <= 7,800)",
            flush=True,
        )
        sb3 = measure_rss("sb3", args.rss_capacity, args.rss_envs)
        print(
            f"memory, SB3 ReplayBuffer(optimize_memory_usage=True): {sb3['rss_bytes'] / sb3['capacity']:,.0f} bytes/transition from RSS "
            f"({sb3['rss_bytes'] / 2**30:.2f} GiB for {sb3['capacity']:,} transitions, filled once in {sb3['seconds']:.1f} s); "
            f"ratio SB3 / ours {sb3['rss_bytes'] / sb3['capacity'] / (ours['rss_bytes'] / ours['capacity']):.2f}x",
            flush=True,
        )
    if not args.skip_speed:
        bench_speed(args.capacity, args.envs, args.rounds)


if __name__ == "__main__":
    main()
