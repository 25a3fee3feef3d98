"""SimPoint's method, in numbers (no gem5 here): gem5's basic-block vectors
read from simpoint.bb.gz, added up into intervals of the chosen length, the
intervals clustered and sampled, and the estimate the samples give.

The choice follows SimPoint 3.0 (Hamerly et al., JILP 2005): each vector
normalised to sum 1, a random linear projection to 15 dimensions, k-means
(scikit-learn's, k-means++ starts, several of them) for k = 1..max_k, k chosen
as the smallest whose BIC reaches 90% of the range of BICs seen (the BIC of
Pelleg and Moore's x-means, spherical Gaussians). Then per cluster the interval
nearest its centroid and the rest of its share drawn at random (seeded): a
stratified sample, so that the spread inside each cluster gives the estimate's
own error bar, not one assumed (one sample a cluster gives none). Same profile,
same parameters, same seed: the same choice.

How many a cluster: `per_cluster` x k samples in all, 2 to each cluster and the
rest in proportion to the clusters' weights (proportional allocation, Cochran's
Sampling Techniques ch. 5). A cluster's error counts in the estimate's variance
as w_c^2 s_c^2 / n_c: the same number to every cluster (`allocation =
"equal"`) spends samples on clusters of 1% that a cluster of 40% needs.

The estimate: CPI = sum over clusters of w_c x mean CPI of its samples (w_c:
the cluster's share of the profiled instructions), IPC = 1 / CPI (never an
average of IPCs); miss rates from the weighted estimates of misses and accesses
per instruction; the 95% interval from the stratified variance sum w_c^2 s_c^2
/ n_c, with Student's t at the samples' degrees of freedom (n - k)."""
from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ..base.errors import UsageError

DIMENSIONS = 15  # SimPoint's projection
BIC_FRACTION = 0.9  # the smallest k whose BIC reaches this share of the range


@dataclass(frozen=True)
class Profile:
    """gem5's basic-block vectors, one per base interval: {block id: instructions}."""

    vectors: tuple[Mapping[int, int], ...]

    @property
    def lengths(self) -> tuple[int, ...]:
        return tuple(sum(v.values()) for v in self.vectors)

    @property
    def insts(self) -> int:
        return sum(self.lengths)


def read_profile(path: Path) -> Profile:
    """simpoint.bb.gz (SimPoint 3's format: a line `T:id:count :id:count ...` per interval)."""
    vectors = []
    try:
        with gzip.open(path, "rt") as f:
            for n, line in enumerate(f, 1):
                if not line.startswith("T"):
                    continue
                pairs = [p for p in line[1:].split() if p]
                try:
                    vec = {int(b): int(c) for b, c in (p.strip(":").split(":") for p in pairs)}
                except ValueError:
                    raise UsageError(f"{path} line {n} is not a basic-block vector", "profile the ROI again") from None
                vectors.append(vec)
    except (OSError, EOFError) as e:
        raise UsageError(f"{path} cannot be read as gem5's basic-block vectors ({e})", "profile the ROI again") from None
    return Profile(tuple(vectors))


def merged(profile: Profile, factor: int) -> Profile:
    """Intervals of `factor` base intervals each, their vectors added up (a last
    partial one left out, as gem5 leaves out its own)."""
    out = []
    for i in range(0, len(profile.vectors) - factor + 1, factor):
        vec: dict[int, int] = {}
        for v in profile.vectors[i:i + factor]:
            for b, c in v.items():
                vec[b] = vec.get(b, 0) + c
        out.append(vec)
    return Profile(tuple(out))


@dataclass(frozen=True)
class Rule:
    """How interval, k, samples and warm-up are picked, fixed before any benchmark is measured."""

    base_interval: int = 10_000  # what gem5 profiles in; intervals are multiples of it
    intervals: int = 400  # about this many intervals in a ROI: interval = ROI / this
    max_k: int = 10
    per_cluster: int = 3
    detailed_warmup: float = 0.2  # the detailed CPU's warm-up: at least this share of an interval ...
    detailed_budget: float = 0.10  # ... and as much more as keeps detailed instructions within this share of the ROI
    max_detailed_warmup: float = 2.0  # ... up to this many intervals
    functional_warmup: int = 2_000_000  # atomic with caches: at least this many instructions (a 512 KiB L2 filled)
    functional_intervals: int = 20  # ... or this many intervals, whichever is more
    seed: int = 1
    allocation: str = "proportional"  # samples a cluster: "proportional" to its weight (2 at least), or "equal"

    def factor(self, roi_insts: int) -> int:
        return max(1, round(roi_insts / (self.intervals * self.base_interval)))

    def detailed_share_bound(self) -> float:
        """The most detailed instructions (warm-up and measured) can be, as a share of the ROI, at the least warm-up."""
        return self.max_k * self.per_cluster * (1 + self.detailed_warmup) / self.intervals

    def detailed_warmup_insts(self, roi_insts: int, measured: int, samples: int, interval: int) -> int:
        """Each sample's detailed warm-up: what the budget leaves once the samples' own
        intervals are counted (their predictors and pipeline start cold: warm-up is what
        the budget is best spent on), within [detailed_warmup, max_detailed_warmup] intervals."""
        left = (self.detailed_budget * roi_insts - measured) / max(1, samples)
        return round(min(self.max_detailed_warmup * interval, max(self.detailed_warmup * interval, left)))


@dataclass(frozen=True)
class Sample:
    interval: int  # its index among the intervals
    cluster: int
    start: int  # instructions from the ROI's start
    length: int  # instructions measured (the interval's own length)
    nearest: bool  # the one nearest its cluster's centroid


@dataclass(frozen=True)
class Choice:
    k: int
    weights: tuple[float, ...]  # per cluster: its share of the profiled instructions
    labels: tuple[int, ...]  # per interval: its cluster
    samples: tuple[Sample, ...]
    bics: tuple[float, ...]  # per k tried, 1..max_k


def choose(profile: Profile, rule: Rule) -> Choice:
    import numpy as np

    n = len(profile.vectors)
    if n < 2:
        raise UsageError(f"the region of interest holds {n} interval(s) of the chosen length",
                         "an interval longer than the ROI samples nothing: profile a longer ROI, or a smaller interval")
    points = _projected(profile, rule.seed)
    lengths = np.array(profile.lengths, dtype=float)
    fits = [_kmeans(points, k, rule.seed) for k in range(1, min(rule.max_k, n) + 1)]
    bics = [_bic(points, labels, centers) for labels, centers in fits]
    low, high = min(bics), max(bics)
    k = next(i + 1 for i, b in enumerate(bics) if high == low or b >= low + BIC_FRACTION * (high - low))
    labels, centers = fits[k - 1]
    weights = tuple(float(lengths[labels == c].sum() / lengths.sum()) for c in range(k))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    sizes = [int((labels == c).sum()) for c in range(k)]
    counts = allocation(weights, sizes, rule)
    rng = np.random.default_rng(rule.seed)
    samples: list[Sample] = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        nearest = int(members[np.argmin(((points[members] - centers[c]) ** 2).sum(axis=1))])
        others = [int(i) for i in members if i != nearest]
        picked = [nearest, *rng.choice(others, size=counts[c] - 1, replace=False).tolist()]
        samples += [Sample(int(i), c, int(starts[i]), int(lengths[i]), i == nearest) for i in sorted(picked)]
    return Choice(k, weights, tuple(int(x) for x in labels), tuple(sorted(samples, key=lambda s: s.start)), tuple(bics))


LEAST_PER_CLUSTER = 2  # the fewest that show a cluster's spread


def allocation(weights: Sequence[float], sizes: Sequence[int], rule: Rule) -> list[int]:
    """Samples per cluster (each at most the cluster's intervals). Proportional: 2
    each, then one at a time to the cluster furthest below its share of the total
    (w_c x per_cluster x k), the lower index on a tie."""
    if rule.allocation == "equal":
        return [min(n, rule.per_cluster) for n in sizes]
    total = rule.per_cluster * len(sizes)
    counts = [min(n, LEAST_PER_CLUSTER) for n in sizes]
    while sum(counts) < total:
        room = [c for c in range(len(sizes)) if counts[c] < sizes[c]]
        if not room:
            break
        counts[max(room, key=lambda c: (weights[c] * total - counts[c], -c))] += 1
    return counts


def _projected(profile: Profile, seed: int):  # type: ignore[no-untyped-def]
    """Normalised vectors, projected to DIMENSIONS by a seeded random matrix (uniform in [-1, 1], as SimPoint's)."""
    import numpy as np

    blocks = sorted({b for v in profile.vectors for b in v})
    column = {b: i for i, b in enumerate(blocks)}
    dense = np.zeros((len(profile.vectors), len(blocks)))
    for r, v in enumerate(profile.vectors):
        total = sum(v.values()) or 1
        for b, c in v.items():
            dense[r, column[b]] = c / total
    projection = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(len(blocks), DIMENSIONS))
    return dense @ projection


def _kmeans(points, k: int, seed: int):  # type: ignore[no-untyped-def]
    from sklearn.cluster import KMeans

    fit = KMeans(n_clusters=k, n_init=5, random_state=seed).fit(points)
    return fit.labels_, fit.cluster_centers_


def _bic(points, labels, centers) -> float:  # type: ignore[no-untyped-def]
    """Pelleg and Moore's BIC for k spherical Gaussians with one shared variance:
    the log-likelihood of the points, less half the free parameters times log R."""
    r, m = points.shape
    k = len(centers)
    sq = float(((points - centers[labels]) ** 2).sum())
    if r <= k:
        return float("-inf")
    if sq <= 0:  # every point on its centroid: nothing more to explain
        return float("inf")
    var = sq / (m * (r - k))
    sizes = [int((labels == c).sum()) for c in range(k)]
    ll = sum(n * math.log(n / r) for n in sizes if n) - r * m / 2 * math.log(2 * math.pi * var) - m * (r - k) / 2
    params = (k - 1) + m * k + 1
    return float(ll - params / 2 * math.log(r))


@dataclass(frozen=True)
class Measured:
    """One sample's measured interval, from its run's stats."""

    cluster: int
    insts: float
    cycles: float
    l1d_accesses: Optional[float] = None
    l1d_misses: Optional[float] = None
    l2_accesses: Optional[float] = None
    l2_misses: Optional[float] = None

    @property
    def cpi(self) -> float:
        return self.cycles / self.insts


@dataclass(frozen=True)
class Estimate:
    cpi: float
    half_width: float  # the 95% interval: cpi +- half_width
    samples: int
    k: int
    l1d_miss_rate: Optional[float] = None
    l2_miss_rate: Optional[float] = None

    @property
    def ipc(self) -> float:
        return 1.0 / self.cpi

    @property
    def relative_half_width(self) -> float:
        return self.half_width / self.cpi


def estimate(weights: Sequence[float], measured: Sequence[Measured]) -> Estimate:
    """Weighted CPI with its 95% interval from the samples' spread inside each cluster."""
    from scipy import stats as scistats

    by: dict[int, list[Measured]] = {}
    for m in measured:
        by.setdefault(m.cluster, []).append(m)
    missing = [c for c in range(len(weights)) if weights[c] > 0 and c not in by]
    if missing:
        raise UsageError(f"cluster(s) {missing} have no measured sample", "measure every sample before estimating")
    cpi = sum(w * _mean([m.cpi for m in by[c]]) for c, w in enumerate(weights) if w > 0)
    variance = sum(w * w * _var([m.cpi for m in by[c]]) / len(by[c]) for c, w in enumerate(weights) if w > 0)
    df = len(measured) - len(by)
    t = float(scistats.t.ppf(0.975, df)) if df > 0 else float("inf")
    return Estimate(cpi, t * math.sqrt(variance), len(measured), len(by),
                    _rate(weights, by, "l1d_misses", "l1d_accesses"), _rate(weights, by, "l2_misses", "l2_accesses"))


def _rate(weights: Sequence[float], by: Mapping[int, Sequence[Measured]], misses: str, accesses: str) -> Optional[float]:
    """A miss rate from the weighted estimates of misses and of accesses per instruction."""
    num = den = 0.0
    for c, w in enumerate(weights):
        got = [m for m in by.get(c, ()) if getattr(m, misses) is not None and getattr(m, accesses)]
        if w > 0 and not got:
            return None
        if got:
            num += w * _mean([getattr(m, misses) / m.insts for m in got])
            den += w * _mean([getattr(m, accesses) / m.insts for m in got])
    return num / den if den else None


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _var(xs: Sequence[float]) -> float:
    """The sample variance (0 for one sample: it says nothing of the spread)."""
    if len(xs) < 2:
        return 0.0
    mu = _mean(xs)
    return sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)
