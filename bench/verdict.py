#!/usr/bin/env python3
"""Verdicts from interleaved benchmark rounds, decided by a rule, not one median.

Two proxies measured in the same rounds give pairs (ours, theirs), one per round.
Each round's own difference (or ratio) cancels what moved both sides in that
round; the estimate is the median of those, and resampling the rounds puts a 90%
bootstrap interval around it:

- difference (latency): "lower" when ours' median is lower and the whole interval
  of the median per-round difference (ours - theirs) is below zero; "higher" when
  ours' median is higher and the interval is above zero; "level" otherwise.
- ratio (CPU per request): the same with per-round ours / theirs, around 1.

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
    return statistics.median(a - b for a, b in sample)


def _ratio(sample):
    return statistics.median(a / b for a, b in sample)


def _word(lo, hi, no_change, ours, theirs):
    lower = statistics.median(ours) < statistics.median(theirs)
    if hi < no_change and lower:
        return "lower"
    if lo > no_change and not lower:
        return "higher"
    return "level"


def difference(ours, theirs, seed=1):
    """(estimate, lo, hi, word) for median(ours) - median(theirs)."""
    pairs = list(zip(ours, theirs))
    if len(pairs) < MIN_ROUNDS:
        return None
    estimate = _difference(pairs)
    lo, hi = _interval(pairs, _difference, seed)
    return estimate, lo, hi, _word(lo, hi, 0.0, [a for a, _ in pairs], [b for _, b in pairs])


def ratio(ours, theirs, seed=1):
    """(estimate, lo, hi, word) for median(ours) / median(theirs)."""
    pairs = [(a, b) for a, b in zip(ours, theirs) if b > 0]
    if len(pairs) < MIN_ROUNDS:
        return None
    estimate = _ratio(pairs)
    lo, hi = _interval(pairs, _ratio, seed)
    return estimate, lo, hi, _word(lo, hi, 1.0, [a for a, _ in pairs], [b for _, b in pairs])


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
    r = ratio([x * (0.8 + noise()) for x in base], base)
    assert r[3] == "lower" and abs(r[0] - 0.8) < 0.05 and r[1] < r[2] < 1.0, r
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
