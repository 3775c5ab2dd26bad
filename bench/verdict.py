#!/usr/bin/env python3
"""Verdicts from interleaved benchmark rounds, decided by a rule, not one median.

Two proxies measured in the same rounds give pairs (ours, theirs), one per round.
A verdict compares the medians and resamples the rounds (pairs kept together, so a
noisy round moves both sides alike) to put a 90% bootstrap interval around the
difference or the ratio:

- difference (latency): "lower" when ours' median is lower and the whole interval
  of median(ours) - median(theirs) is below zero; "higher" when above zero;
  "level" when the interval holds zero.
- ratio (CPU per request): the same around median(ours) / median(theirs) and 1.

Resampling is seeded, so a report reads the same when re-rendered from its JSON.

    python3 bench/verdict.py --self-test     # checks the rule on made-up rounds
"""

import random
import statistics
import sys

RESAMPLES = 10000
LEVEL = 0.90
# Fewer pairs than this give no verdict: resampling 2 or 3 rounds yields a handful
# of distinct samples and an interval that means nothing.
MIN_ROUNDS = 5


def _interval(pairs, stat, seed):
    rng = random.Random(seed)
    n = len(pairs)
    values = []
    for _ in range(RESAMPLES):
        sample = [pairs[rng.randrange(n)] for _ in range(n)]
        values.append(stat(sample))
    values.sort()
    tail = (1.0 - LEVEL) / 2.0
    lo = values[int(tail * (RESAMPLES - 1))]
    hi = values[int((1.0 - tail) * (RESAMPLES - 1))]
    return lo, hi


def _difference(sample):
    return statistics.median(a for a, _ in sample) - statistics.median(b for _, b in sample)


def _ratio(sample):
    return statistics.median(a for a, _ in sample) / statistics.median(b for _, b in sample)


def difference(ours, theirs, seed=1):
    """(estimate, lo, hi, word) for median(ours) - median(theirs)."""
    pairs = list(zip(ours, theirs))
    if len(pairs) < MIN_ROUNDS:
        return None
    estimate = _difference(pairs)
    lo, hi = _interval(pairs, _difference, seed)
    word = "lower" if hi < 0 else "higher" if lo > 0 else "level"
    return estimate, lo, hi, word


def ratio(ours, theirs, seed=1):
    """(estimate, lo, hi, word) for median(ours) / median(theirs)."""
    pairs = [(a, b) for a, b in zip(ours, theirs) if b > 0]
    if len(pairs) < MIN_ROUNDS:
        return None
    estimate = _ratio(pairs)
    lo, hi = _interval(pairs, _ratio, seed)
    word = "lower" if hi < 1 else "higher" if lo > 1 else "level"
    return estimate, lo, hi, word


def describe(result, unit="", ratio_form=False):
    """One line for a report: '-0.41 ms [90% -0.52, -0.30]: lower'."""
    if result is None:
        return f"no verdict: fewer than {MIN_ROUNDS} rounds"
    estimate, lo, hi, word = result
    if ratio_form:
        return f"{estimate:.3f}x [90% {lo:.3f}, {hi:.3f}]: {word}"
    return f"{estimate:+.3f}{unit} [90% {lo:+.3f}, {hi:+.3f}]: {word}"


def self_test():
    rng = random.Random(7)
    noise = lambda: rng.gauss(0, 0.05)  # noqa: E731
    rounds = 15
    # A round-wide swing that moves both sides alike, as on a noisy VM.
    swings = [rng.gauss(0, 0.5) for _ in range(rounds)]
    base = [2.0 + s + noise() for s in swings]
    lower = [1.6 + s + noise() for s in swings]
    same = [2.0 + s + noise() for s in swings]
    higher = [2.4 + s + noise() for s in swings]
    assert difference(lower, base)[3] == "lower", difference(lower, base)
    assert difference(higher, base)[3] == "higher", difference(higher, base)
    assert difference(same, base)[3] == "level", difference(same, base)
    r = ratio([x * 0.8 for x in base], base)
    assert r[3] == "lower" and r[1] <= 0.8 <= r[2], r
    assert ratio(same, base)[3] == "level", ratio(same, base)
    assert difference([1.0] * 4, [2.0] * 4) is None
    assert ratio([1.0] * 4, [2.0] * 4) is None
    # Seeded: the same rounds give the same interval.
    assert difference(lower, base) == difference(lower, base)
    print("verdict: self-test passed:", describe(difference(lower, base), " ms"),
          "|", describe(ratio(higher, base), ratio_form=True))


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    else:
        sys.exit(__doc__)
