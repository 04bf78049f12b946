"""Training one experiment's runs, one at a time or several at once in worker processes, each
logging to its own TensorBoard folder."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm


def train_runs(
    train: Callable,
    configs: list,
    tb_dirs: list[Path],
    jobs: int,
    report: Callable[[int, Any], None],
    progress: bool = True,
) -> list:
    """``train(config, progress=..., writer=...)`` of each config, logging to its TensorBoard folder;
    the results in the configs' order, and ``report(index, result)`` as each finishes (``index``
    its config's). With ``jobs > 1``,
    that many run at once in worker processes of ``cpu_count // jobs`` torch threads each: on 2
    cores, two one-thread detector runs get through 1.6x the steps of one two-thread run.

    :param progress: a bar of each run's steps (one at a time) or of the finished runs (several).
    """
    if jobs == 1:
        results = []
        for config, tb_dir in zip(configs, tb_dirs, strict=True):
            results.append(_train_logged(train, config, tb_dir, progress))
            report(len(results) - 1, results[-1])
        return results
    threads = max(1, (os.cpu_count() or 1) // jobs)
    results = [None] * len(configs)
    with ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=torch.set_num_threads, initargs=(threads,)
    ) as pool:
        futures = {
            pool.submit(_train_logged, train, config, tb_dir, False): index
            for index, (config, tb_dir) in enumerate(zip(configs, tb_dirs, strict=True))
        }
        bar = tqdm(
            as_completed(futures), total=len(futures), desc=f"runs, {jobs} at a time", leave=False, disable=not progress
        )
        for future in bar:
            index = futures[future]
            results[index] = future.result()
            report(index, results[index])
    return results


def _train_logged(train: Callable, config, tb_dir: Path, progress: bool):
    with SummaryWriter(str(tb_dir)) as writer:
        return train(config, progress=progress, writer=writer)
