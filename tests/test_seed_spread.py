"""tools/seed_spread.py: Student's t from its closed forms, and the spread of a figure over
seeds with the 95 % interval where a new seed lands."""
import random
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from seed_spread import Spread, student_t_coverage, student_t_quantile  # noqa: E402

# t(0.975, dof) from published tables.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 30: 2.042}


@pytest.mark.parametrize("dof, t", sorted(T_975.items()))
def test_quantiles_match_the_tables(dof, t):
    assert student_t_quantile(0.975, dof) == pytest.approx(t, abs=5e-4)
    assert student_t_coverage(t, dof) == pytest.approx(0.95, abs=2e-4)


def test_many_degrees_of_freedom_approach_the_normal():
    assert student_t_quantile(0.975, 400) == pytest.approx(1.966, abs=1e-3)


@pytest.mark.parametrize("bad", [0, 2.5, -1])
def test_degrees_of_freedom_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="positive integer"):
        student_t_coverage(1.0, bad)


def test_spread_of_three_seeds():
    spread = Spread.of([64.4, 69.6, 64.0])
    assert (spread.mean, spread.low, spread.high) == (pytest.approx(66.0), 64.0, 69.6)
    low, high = spread.new_seed
    assert (round(low, 1), round(high, 1)) == (50.5, 81.5)
    assert spread.describe() == "66.0 (64.0 to 69.6 over 3 seeds; a new seed 50.5 to 81.5)"
    assert Spread.of([1.0, 5.0, 9.0]).describe(unit=" %", bounds=(0, 100)) == (
        "5.0 % (1.0 to 9.0 % over 3 seeds; a new seed 0.0 to 24.9 %)")


def test_one_or_two_seeds_have_no_interval():
    assert Spread.of([64.4]).describe() == "64.4 (one seed)"
    assert Spread.of([64.4, 62.0]).new_seed is None
    assert Spread.of([64.4, 62.0]).describe() == "63.2 (62.0 to 64.4 over 2 seeds)"
    with pytest.raises(ValueError):
        Spread.of([])


def test_the_interval_holds_a_new_draw_about_95_times_in_100():
    """Drawn from a normal distribution, n = 3: the interval of three draws holds a fourth."""
    rng = random.Random(0)
    trials, held = 4000, 0
    for _ in range(trials):
        draws = [rng.gauss(60, 4) for _ in range(4)]
        low, high = Spread.of(draws[:3]).new_seed
        held += low <= draws[3] <= high
    assert abs(held / trials - 0.95) < 0.015
