"""search.genetic.PoolGA: pymoo's GA over a finite pool, offspring snapped to the nearest
unused member; checked against hand-computed cases and a random-search reference."""

import numpy as np
import pytest

from search.genetic import INFEASIBLE_PENALTY, PoolGA, unit_columns


def test_unit_columns_hand_case():
    X = np.array([[1.0, 5.0, 7.0], [3.0, 5.0, 8.0], [2.0, 5.0, 9.0]])
    np.testing.assert_allclose(unit_columns(X), [[0, 0, 0], [1, 0, 0.5], [0.5, 0, 1]])
    with pytest.raises(ValueError, match="non-empty"):
        unit_columns(np.zeros((0, 2)))


def test_asks_only_unused_members_outside_exclude_and_snaps_to_the_nearest():
    # the corners of the unit square plus the centre
    pool = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5]], dtype=float)
    ga = PoolGA(pool, pop_size=2, n_offsprings=2, seed=0)
    ga.start([0, 3], [1.0, 2.0])
    exclude = np.zeros(5, dtype=bool)
    exclude[4] = True
    got = ga.ask(2, exclude=exclude)
    assert sorted(got.tolist()) == [1, 2]          # the only members left
    ga.tell([3.0, 4.0])
    assert ga.ask(2, exclude=exclude).tolist() == []   # nothing left outside exclude
    # snapping: with every member free but one, each proposal lands on its nearest free member
    ga = PoolGA(pool, pop_size=2, n_offsprings=1, seed=1)
    ga.start([0, 1], [1.0, 1.0])
    X = ga._algo.ask().get("X")                    # what pymoo proposes next, by hand ...
    ga2 = PoolGA(pool, pop_size=2, n_offsprings=1, seed=1)
    ga2.start([0, 1], [1.0, 1.0])
    j = int(ga2.ask(1)[0])                         # ... and where PoolGA puts it
    d = np.abs(pool - X[0]).sum(axis=1)
    d[[0, 1]] = np.inf
    assert j == int(np.argmin(d))


def test_same_seed_same_proposals_and_infeasible_penalty():
    rng = np.random.default_rng(4)
    pool = rng.random((300, 3))

    def run(seed):
        ga = PoolGA(pool, 6, 6, seed=seed)
        ga.start(np.arange(6), np.r_[np.inf, np.arange(1.0, 6.0)])
        seq = []
        for _ in range(4):
            idx = ga.ask(6)
            seq.append(idx.tolist())
            ga.tell(1.0 + pool[idx].sum(axis=1))
        return seq

    assert run(7) == run(7)
    assert run(7) != run(8)
    ga = PoolGA(pool, 3, 3, seed=0)
    f = ga._fitness(np.array([np.e, np.inf, 1.0, np.nan]))
    np.testing.assert_allclose(f, [1.0, 1.0 + INFEASIBLE_PENALTY, 0.0, 1.0 + INFEASIBLE_PENALTY])


def test_beats_random_search_on_a_smooth_toy_problem():
    # pool of 4,000 points in 4-D; minimise a shifted sphere; budget 100 evaluations
    pool = np.random.default_rng(0).random((4000, 4))
    f = lambda i: 1.0 + ((pool[i] - 0.3) ** 2).sum(axis=1)  # noqa: E731
    ga_best, rnd_best = [], []
    for seed in range(7):
        rng = np.random.default_rng(100 + seed)
        first = rng.choice(len(pool), 20, replace=False)
        ga = PoolGA(pool, 20, 10, seed=seed)
        ga.start(first, f(first))
        best = f(first).min()
        for _ in range(8):
            idx = ga.ask(10)
            v = f(idx)
            ga.tell(v)
            best = min(best, v.min())
        ga_best.append(best)
        rnd_best.append(f(np.r_[first, rng.choice(np.setdiff1d(np.arange(len(pool)), first), 80,
                                                  replace=False)]).min())
    assert np.median(ga_best) < np.median(rnd_best)


def test_bad_arguments():
    with pytest.raises(ValueError, match="population must be an integer >= 2; got 1"):
        PoolGA(np.zeros((3, 2)), 1, 1, seed=0)
    with pytest.raises(ValueError, match="offspring per generation must be an integer >= 1; got 0"):
        PoolGA(np.zeros((3, 2)), 2, 0, seed=0)
    ga = PoolGA(np.eye(3), 2, 2, seed=0)
    with pytest.raises(RuntimeError, match="needs start"):
        ga.ask(1)
    with pytest.raises(ValueError, match="needs pool indices and as many values"):
        ga.start([0, 1], [1.0])
