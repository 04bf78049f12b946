"""Properties of the numeric core over generated cases, each against a plain reference written here.

Hypothesis draws the cases (seeded: the ``repeatable`` profile of conftest.py derandomizes every
test, so a run repeats exactly) and shrinks a failure to a small counterexample. Each group
names the size of what it draws so that the whole file stays within about a minute.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from replay_reference import EVENTS, FakeStackingEnvs, ReferenceStream, check_against_reference, feed, make_buffer
from scipy.stats import trim_mean

from rl_coordconv import AddCoords, CoordConv2d
from rl_coordconv.agents.replay import SumTree
from rl_coordconv.agents.replay.sampler import importance_weights, stratified_sample
from rl_coordconv.analysis import statistics as stats

# Priorities on a grid of quarters: every sum the tree or np.cumsum forms is exact in float64, so
# a point on a cumulative boundary is the same point for the tree and for the reference.
QUARTERS = np.arange(13) / 4


def priorities_of(capacity: int, seed: int, zero_fraction: float, *, allow_empty: bool = False) -> np.ndarray:
    """``capacity`` quarters, about ``zero_fraction`` of them zero (at least one not, unless ``allow_empty``)."""
    rng = np.random.default_rng(seed)
    values = rng.choice(QUARTERS[1:], size=capacity) * (rng.random(capacity) >= zero_fraction)
    if not values.any() and not allow_empty:
        values[rng.integers(capacity)] = 1.0
    return values


def tree_of(values: np.ndarray, dense_levels: int | None = None) -> SumTree:
    tree_class = SumTree if dense_levels is None else type("SumTree", (SumTree,), {"DENSE_LEVELS": dense_levels})
    tree = tree_class(values.size)
    tree.update(np.arange(values.size), values)
    return tree


# ------------------------------------------------------------------------------ the sum tree

TREE_SIZES = st.integers(1, 5000)  # the default dense search covers 1024 leaves; above, levels are walked
ZERO_FRACTIONS = st.sampled_from([0.0, 0.3, 0.9, 0.999])


@settings(max_examples=150)
@given(
    capacity=TREE_SIZES,
    dense_levels=st.none() | st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
    zero_fraction=ZERO_FRACTIONS,
)
@example(capacity=3000, dense_levels=None, seed=0, zero_fraction=0.3)  # 12 levels: 2 walked below the dense 10
@example(capacity=5, dense_levels=0, seed=1, zero_fraction=0.0)  # every level walked
def test_find_is_a_search_in_the_cumulative_sums_at_every_boundary(capacity, dense_levels, seed, zero_fraction):
    values = priorities_of(capacity, seed, zero_fraction)
    tree = tree_of(values, dense_levels)
    edges = np.cumsum(values)
    total = edges[-1]
    rng = np.random.default_rng(seed)
    points = np.concatenate([[0.0], edges[edges < total], rng.random(200) * total, np.nextafter(edges[edges < total], 0)])
    np.testing.assert_array_equal(tree.find(points), np.searchsorted(edges, points, side="right"))
    assert tree.total == total
    # Rounding at or past the total ends on the last non-zero leaf, never on an empty one.
    assert tree.find(np.array([total, total * (1 + 1e-12)])).tolist() == [np.flatnonzero(values)[-1]] * 2


@settings(max_examples=40)
@given(
    capacity=TREE_SIZES,
    dense_levels=st.none() | st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
    batches=st.lists(st.integers(1, 300), min_size=1, max_size=6),
)
@example(capacity=2500, dense_levels=None, seed=0, batches=[300, 300])
def test_batch_updates_keep_the_leaves_and_every_sum_of_the_tree(capacity, dense_levels, seed, batches):
    rng = np.random.default_rng(seed)
    tree = tree_of(np.zeros(capacity), dense_levels)
    reference = np.zeros(capacity)
    for size in batches:
        leaves = rng.integers(0, capacity, size=size)  # repeats likely: the last value of a leaf wins
        values = rng.choice(QUARTERS, size=size)
        tree.update(leaves, values)
        for leaf, value in zip(leaves, values):
            reference[leaf] = value
        np.testing.assert_array_equal(tree.leaf_values(), reference)
        assert tree.total == reference.sum()
        nodes = tree.nodes
        np.testing.assert_array_equal(nodes[1 : tree.n_leaves], nodes[2::2] + nodes[3::2])


# ------------------------------------------------------------ stratified sampling and weights


@settings(max_examples=60)
@given(
    capacities=st.lists(st.integers(1, 1500), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
    zero_fractions=st.lists(ZERO_FRACTIONS | st.just(1.0), min_size=4, max_size=4),
    batch_size=st.integers(1, 64),
)
def test_stratified_draws_are_one_per_segment_of_all_the_trees_leaves(capacities, seed, zero_fractions, batch_size):
    """Over several trees (a shard's actors' buffers, some of them empty) as over one."""
    values = [
        priorities_of(capacity, seed + index, zero_fraction, allow_empty=True)
        for index, (capacity, zero_fraction) in enumerate(zip(capacities, zero_fractions))
    ]
    assume(any(v.any() for v in values))
    owners, leaves = stratified_sample([tree_of(v) for v in values], batch_size, np.random.default_rng(seed))
    # The formula: draw k lands uniformly in the k-th of batch_size equal segments of the total,
    # and takes the leaf whose interval of the concatenated cumulative sums holds it.
    whole = np.concatenate(values)
    targets = (np.arange(batch_size) + np.random.default_rng(seed).random(batch_size)) * (whole.sum() / batch_size)
    expected = np.searchsorted(np.cumsum(whole), targets, side="right")
    offsets = np.concatenate([[0], np.cumsum(capacities)])
    np.testing.assert_array_equal(offsets[owners] + leaves, expected)
    assert (leaves < np.array(capacities)[owners]).all() and (whole[expected] > 0).all()


@settings(max_examples=100)
@given(
    priorities=arrays(np.float64, st.integers(1, 64), elements=st.floats(1e-6, 1e3)),
    slack=st.floats(1.0, 10.0),
    size=st.integers(1, 10**6),
    beta=st.floats(0.0, 1.0),
)
def test_importance_weights_are_the_formula_over_the_largest(priorities, slack, size, beta):
    total = priorities.sum() * slack  # the sampled leaves are a part of the tree's total
    weights = importance_weights(priorities, total, size, beta)
    reference = np.array([(size * p / total) ** -beta for p in priorities])
    np.testing.assert_allclose(weights, reference / reference.max(), rtol=1e-6)
    assert weights.dtype == np.float32 and weights.max() == 1.0 and (weights > 0).all()


# ------------------------------------------------------------ n-step windows and frame rings

RUN_EVENTS = st.one_of(st.just("step"), st.sampled_from(EVENTS))  # about half plain steps


@settings(max_examples=150)
@given(
    n_envs=st.integers(1, 3),
    stack=st.integers(1, 4),
    n_steps=st.integers(1, 4),
    per_env=st.integers(4, 30),
    gamma=st.sampled_from([1.0, 0.9, 0.5]),
    handle_timeout_termination=st.booleans(),
    data=st.data(),
)
def test_every_sampleable_window_matches_the_list_of_transitions(
    n_envs, stack, n_steps, per_env, gamma, handle_timeout_termination, data
):
    """For any interleaving of the envs' steps, game ends, life losses, time limits and outside
    resets, after every step: the sampleable transitions are exactly the reference's (complete
    windows, not overwritten), and each one's stacks, action, n-step return, discount and done
    are those of a plain loop over its env's list of transitions."""
    assume(n_steps <= per_env)
    steps = data.draw(st.integers(1, 3 * per_env), label="steps")
    events = data.draw(st.lists(RUN_EVENTS, min_size=steps * n_envs, max_size=steps * n_envs), label="events")
    buffer = make_buffer(
        (stack, 3, 3),
        per_env * n_envs,
        n_envs=n_envs,
        n_steps=n_steps,
        gamma=gamma,
        handle_timeout_termination=handle_timeout_termination,
    )
    envs = FakeStackingEnvs(n_envs, stack, size=3, events=iter(events))
    streams = [ReferenceStream(stack) for _ in range(n_envs)]
    for _ in range(steps):
        feed(buffer, streams, envs.step(), handle_timeout_termination)
        check_against_reference(buffer, streams)


# ---------------------------------------------------------------------------------- statistics

SCORES = arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e4, 1e4, allow_subnormal=False))
SEEDS = arrays(np.float64, st.integers(2, 8), elements=st.floats(-1e4, 1e4, allow_subnormal=False))
TIED_SCORES = st.lists(st.lists(st.integers(0, 4).map(float), min_size=1, max_size=6), min_size=1, max_size=4)


@settings(max_examples=100)
@given(scores=SCORES)
def test_the_interquartile_mean_is_scipys_quarter_trimmed_mean(scores):
    assert stats.interquartile_mean(scores) == pytest.approx(trim_mean(scores, 0.25), rel=1e-12, abs=1e-9)


@settings(max_examples=60)
@given(scores=TIED_SCORES, data=st.data())
def test_improvement_both_ways_sums_to_one_with_ties_counted_half(scores, data):
    baseline = [data.draw(st.lists(st.integers(0, 4).map(float), min_size=1, max_size=6)) for _ in scores]
    forward = stats.probability_of_improvement(scores, baseline)
    assert forward + stats.probability_of_improvement(baseline, scores) == pytest.approx(1.0)
    pairs = [np.mean([(x > y) + 0.5 * (x == y) for x, y in itertools.product(xs, ys)]) for xs, ys in zip(scores, baseline)]
    assert forward == pytest.approx(np.mean(pairs))


@settings(max_examples=40)
@given(values=SEEDS, baseline=SEEDS, seed=st.integers(0, 1000))
def test_a_bootstrap_interval_holds_its_point_estimate(values, baseline, seed):
    tolerance = 1e-9 * (1 + np.abs(values).max() + np.abs(baseline).max())
    low, high = stats.bootstrap_ci(values, resamples=2000, seed=seed)
    assert low - tolerance <= values.mean() <= high + tolerance
    low, high = stats.bootstrap_difference_ci(values, baseline, resamples=2000, seed=seed)
    assert low - tolerance <= values.mean() - baseline.mean() <= high + tolerance


INTERVALS = st.tuples(st.floats(-10, 10), st.floats(0, 10)).map(lambda pair: (pair[0], pair[0] + pair[1])) | st.just(
    stats.NO_INTERVAL
)
MIRROR = {"better": "worse", "worse": "better", "similar": "similar"}


@settings(max_examples=200)
@given(final=INTERVALS, auc=INTERVALS)
def test_swapping_the_archs_swaps_better_and_worse(final, auc):
    """Swapping the archs negates each difference: its interval (low, high) becomes (-high, -low)."""
    swapped = [(-high, -low) for low, high in (final, auc)]
    assert stats.verdict(*swapped) == MIRROR[stats.verdict(final, auc)]


# ------------------------------------------------------------------------------- CoordConv2d


@settings(max_examples=200)
@given(
    channels=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2) | st.just("valid") | st.just("same"),
    padding_mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    dilation=st.integers(1, 2),
    with_r=st.booleans(),
    bias=st.booleans(),
    path=st.sampled_from(CoordConv2d.PATHS),
    size=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_path_equals_add_coords_then_conv2d_in_values_and_gradients(
    channels, kernel, stride, padding, padding_mode, dilation, with_r, bias, path, size, seed
):
    (in_channels, out_channels), (batch, height, width) = channels, size
    assume(not (padding == "same" and stride > 1))  # torch refuses it
    pad = (dilation * (kernel - 1)) // 2 + 1 if padding == "same" else (0 if padding == "valid" else padding)
    assume(padding_mode != "reflect" or pad < min(height, width))
    assume(padding_mode != "circular" or pad <= min(height, width))
    reach = dilation * (kernel - 1) + 1
    assume(padding == "same" or min(height, width) + 2 * pad >= reach)
    torch.manual_seed(seed)
    settings_ = dict(
        stride=stride, padding=padding, dilation=dilation, bias=bias, padding_mode=padding_mode, dtype=torch.float64
    )
    layer = CoordConv2d(in_channels, out_channels, kernel, with_r=with_r, path=path, **settings_)
    naive = nn.Conv2d(in_channels + (3 if with_r else 2), out_channels, kernel, **settings_)
    naive.load_state_dict(layer.state_dict())
    x = torch.randn(batch, in_channels, height, width, dtype=torch.float64, requires_grad=True)
    x_naive = x.detach().clone().requires_grad_(True)
    out, expected = layer(x), naive(AddCoords(with_r)(x_naive))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    cotangent = torch.randn_like(out)
    (out * cotangent).sum().backward()
    (expected * cotangent).sum().backward()
    torch.testing.assert_close(x.grad, x_naive.grad, rtol=1e-10, atol=1e-10)
    for name, parameter in layer.named_parameters():
        torch.testing.assert_close(parameter.grad, naive.get_parameter(name).grad, rtol=1e-10, atol=1e-10)
    # Without autograd (a rollout, a target network), before and after the weight changes in place.
    with torch.no_grad():
        torch.testing.assert_close(layer(x), naive(AddCoords(with_r)(x)), rtol=1e-10, atol=1e-10)
        for module in (layer, naive):
            module.weight.data.mul_(-0.5)
        torch.testing.assert_close(layer(x), naive(AddCoords(with_r)(x)), rtol=1e-10, atol=1e-10)
