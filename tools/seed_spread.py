"""The spread of one figure over training seeds: mean, range, and where a new seed's figure is
expected to land.

Training from scratch on a small data set moves a figure by several points from one seed to the
next, so the demos report every figure over seeds. For three seeds or more, `Spread.new_seed`
is the 95 % prediction interval of one further seed under a normal model of the seed-to-seed
variation: mean ± t(0.975, n-1) · s · sqrt(1 + 1/n), with s the sample standard deviation. It is
wide for few seeds (t = 4.30 at n = 3) because the spread itself is then poorly known.
"""
import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

CONFIDENCE = 0.95
MIN_SEEDS_FOR_INTERVAL = 3


def student_t_coverage(t, dof):
    """P(|T| <= t) for Student's t with `dof` (a positive integer) degrees of freedom, from the
    closed forms for integer degrees of freedom (Abramowitz & Stegun 26.7.3-26.7.4)."""
    if dof < 1 or int(dof) != dof:
        raise ValueError(f"degrees of freedom must be a positive integer, got {dof!r}")
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(dof))
    cos2 = math.cos(theta) ** 2
    if dof % 2:  # odd: 2/pi * (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        series, term = 0.0, 1.0
        for k in range(1, (dof - 1) // 2 + 1):
            series += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * series)
    series, term = 0.0, 1.0  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
    for k in range(1, dof // 2 + 1):
        series += term
        term *= cos2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * series


def student_t_quantile(probability, dof):
    """The t with P(T <= t) = `probability` (0.5 < probability < 1), by bisection."""
    if not 0.5 < probability < 1:
        raise ValueError(f"probability must lie in (0.5, 1), got {probability!r}")
    coverage = 2 * probability - 1
    low, high = 0.0, 1.0
    while student_t_coverage(high, dof) < coverage:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_coverage(middle, dof) < coverage else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Spread:
    values: Tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]):
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(tuple(float(v) for v in values))

    @property
    def mean(self):
        return statistics.fmean(self.values)

    @property
    def low(self):
        return min(self.values)

    @property
    def high(self):
        return max(self.values)

    @property
    def new_seed(self) -> Optional[Tuple[float, float]]:
        """The 95 % prediction interval of a further seed; None below three seeds."""
        n = len(self.values)
        if n < MIN_SEEDS_FOR_INTERVAL:
            return None
        half = (student_t_quantile((1 + CONFIDENCE) / 2, n - 1)
                * statistics.stdev(self.values) * math.sqrt(1 + 1 / n))
        return self.mean - half, self.mean + half

    def describe(self, unit="", bounds=None):
        """'66.0 (64.0 to 69.6 over 3 seeds; a new seed 50.5 to 81.5)'; one seed: '64.4 (one
        seed)'. `bounds` (low, high) clips the new-seed interval to what the figure can be."""
        if len(self.values) == 1:
            return f"{self.mean:.1f}{unit} (one seed)"
        text = (f"{self.mean:.1f}{unit} ({self.low:.1f} to {self.high:.1f}{unit} over "
                f"{len(self.values)} seeds")
        interval = self.new_seed
        if interval is not None:
            low, high = interval
            if bounds is not None:
                low, high = max(low, bounds[0]), min(high, bounds[1])
            text += f"; a new seed {low:.1f} to {high:.1f}{unit}"
        return text + ")"
