"""SimPoint's method in numbers: gem5's vectors read and merged, the choice
(seeded, stratified), the rule's bound on detailed instructions, and the
weighted estimate with its interval, checked against hand-made profiles whose
answer is known."""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from hackback.services import sampling
from hackback.base.errors import UsageError


def _write(path: Path, vectors: list[dict[int, int]]) -> Path:
    with gzip.open(path, "wt") as f:
        for v in vectors:
            f.write("T" + "".join(f":{b}:{c} " for b, c in sorted(v.items())) + "\n")
    return path


def _phases(n: int = 60) -> list[dict[int, int]]:
    """Three phases in turn (blocks 1-2, 3-4, 5-6), each interval 10,000
    instructions, the mix inside a phase wandering at random (seeded)."""
    import random

    rng = random.Random(7)
    out = []
    for i in range(n):
        phase = (i // 10) % 3
        counts = [rng.randint(1_000, 1_500) for _ in range(8)]  # eight blocks a phase, each wandering on its own
        counts[0] += 10_000 - sum(counts)
        out.append({1 + 8 * phase + b: c for b, c in enumerate(counts)})
    return out


def test_gem5s_vectors_are_read_and_merged_into_longer_intervals(tmp_path: Path) -> None:
    profile = sampling.read_profile(_write(tmp_path / "simpoint.bb.gz", _phases(7)))
    assert len(profile.vectors) == 7 and profile.lengths == (10_000,) * 7 and profile.insts == 70_000
    two = sampling.merged(profile, 2)
    assert len(two.vectors) == 3 and two.lengths == (20_000,) * 3  # the last partial one left out
    assert two.vectors[0] == {b: profile.vectors[0][b] + profile.vectors[1][b] for b in range(1, 9)}


def test_a_damaged_profile_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(UsageError, match="cannot be read"):
        sampling.read_profile(tmp_path / "bad.gz")


def test_the_choice_finds_the_phases_weighs_them_and_is_the_same_every_time(tmp_path: Path) -> None:
    profile = sampling.read_profile(_write(tmp_path / "simpoint.bb.gz", _phases()))
    rule = sampling.Rule(max_k=6, per_cluster=3)
    choice = sampling.choose(profile, rule)
    assert choice.k == 3 and len(choice.bics) == 6
    assert sorted(round(w, 2) for w in choice.weights) == [0.33, 0.33, 0.33] and abs(sum(choice.weights) - 1) < 1e-12
    assert len(choice.samples) == 9 and sum(s.nearest for s in choice.samples) == 3
    for s in choice.samples:  # each sample is in its cluster, and where the profile says it starts
        assert choice.labels[s.interval] == s.cluster and s.start == sum(profile.lengths[:s.interval])
        assert min(profile.vectors[s.interval]) == 1 + 8 * ((s.interval // 10) % 3)  # the phase it is of
    assert sampling.choose(profile, rule) == choice  # seeded: the same choice from the same profile
    other = sampling.choose(profile, sampling.Rule(max_k=6, per_cluster=3, seed=2))  # another seed: clusters may split,
    for c in range(other.k):  # but never mix phases
        assert len({(i // 10) % 3 for i, label in enumerate(other.labels) if label == c}) == 1


def test_proportional_allocation_gives_each_cluster_two_and_the_heavy_ones_the_rest() -> None:
    rule = sampling.Rule(per_cluster=3)
    # IS class S's clusters (weights from its sampling): equal allocation gives the cluster
    # of 44% three samples like the one of 0.8%; proportional gives it 8 of the 24.
    w = [0.442, 0.278, 0.207, 0.008, 0.015, 0.018, 0.025, 0.008]
    got = sampling.allocation(w, [100] * 8, rule)
    assert got == [8, 4, 2, 2, 2, 2, 2, 2] and sum(got) == 24
    assert sampling.allocation(w, [100] * 8, sampling.Rule(per_cluster=3, allocation="equal")) == [3] * 8
    # a cluster never gets more samples than it has intervals; what it cannot take goes elsewhere
    assert sampling.allocation([0.9, 0.1], [3, 50], rule) == [3, 3]
    assert sampling.allocation([0.5, 0.5], [1, 1], rule) == [1, 1]
    # the same weights, more samples: the heavy cluster's share grows towards its weight
    assert sampling.allocation([0.8, 0.1, 0.1], [100] * 3, sampling.Rule(per_cluster=10)) == [24, 3, 3]


def test_the_choice_gives_the_heavier_phase_more_samples(tmp_path: Path) -> None:
    vectors = _phases(60)
    heavy = [vectors[i] for i in range(60) if (i // 10) % 3 == 0] * 4 + vectors  # phase 0 four times more
    profile = sampling.read_profile(_write(tmp_path / "simpoint.bb.gz", heavy))
    choice = sampling.choose(profile, sampling.Rule(max_k=6, per_cluster=3))
    per = {c: sum(s.cluster == c for s in choice.samples) for c in range(choice.k)}
    big = max(range(choice.k), key=lambda c: choice.weights[c])
    assert sum(per.values()) == 3 * choice.k and min(per.values()) >= 2
    assert per[big] == max(per.values()) > 3 and sum(s.nearest for s in choice.samples) == choice.k


def test_an_interval_longer_than_the_roi_is_refused(tmp_path: Path) -> None:
    profile = sampling.read_profile(_write(tmp_path / "simpoint.bb.gz", _phases(3)))
    with pytest.raises(UsageError) as e:
        sampling.choose(sampling.merged(profile, 3), sampling.Rule())
    assert "holds 1 interval(s)" in e.value.message and "an interval longer than the ROI" in e.value.hint


def test_the_rule_keeps_detailed_instructions_under_a_tenth_of_the_roi() -> None:
    rule = sampling.Rule()
    assert rule.detailed_share_bound() <= 0.10
    assert rule.factor(15_860_771) == 4 and rule.factor(229_000_000) == 57 and rule.factor(1_000) == 1


def test_the_estimate_weighs_cpi_inverts_it_and_gives_an_interval_from_the_samples() -> None:
    M = sampling.Measured
    measured = [M(0, 1000, 2000, 100, 10, 50, 5), M(0, 1000, 2200, 100, 12, 50, 5), M(0, 1000, 1800, 100, 8, 50, 5),
                M(1, 1000, 1000, 200, 2, 20, 1), M(1, 1000, 1000, 200, 2, 20, 1), M(1, 1000, 1000, 200, 2, 20, 1)]
    est = sampling.estimate([0.75, 0.25], measured)
    assert est.cpi == pytest.approx(0.75 * 2.0 + 0.25 * 1.0) and est.ipc == pytest.approx(1 / 1.75)  # not a mean of IPCs
    # Only cluster 0 varies: s^2 = 0.04, 3 samples, t(0.975, 4 df) = 2.776.
    assert est.half_width == pytest.approx(2.7764451 * math.sqrt(0.75 ** 2 * 0.04 / 3), rel=1e-6)
    # Miss rates from weighted misses and accesses per instruction, not averaged rates.
    assert est.l1d_miss_rate == pytest.approx((0.75 * 0.01 + 0.25 * 0.002) / (0.75 * 0.1 + 0.25 * 0.2))
    with pytest.raises(UsageError, match="no measured sample"):
        sampling.estimate([0.5, 0.5], measured[:3])


@pytest.mark.parametrize("info,says", [
    ({}, "was not saved at a region of interest's start"),
    ({"saved_at": "workbegin", "board": {"memory": "2GiB", "cores": 2, "cpu": "atomic"}}, "sampling here is single-core"),
])
def test_a_checkpoint_sampling_cannot_start_from_is_refused_in_one_line(tmp_path: Path, info: dict, says: str) -> None:  # type: ignore[type-arg]
    from conftest import checkpoint_info_json
    from hackback.steps import sample
    from hackback.store.manifest import Manifest, write_manifest
    from hackback.store.records import CheckpointArtifact

    (tmp_path / "cpt.100").mkdir()
    (tmp_path / "cpt.100" / "m5.cpt").write_text("[root]\n")
    m = Manifest("checkpoints", "c")
    m.set_part("checkpoint", {}, {}, checkpoint_info_json("cpt.100", **info))
    write_manifest(tmp_path, m)
    with pytest.raises(UsageError, match=says) as e:
        sample.check(CheckpointArtifact.read(tmp_path))
    assert "\n" not in e.value.one_line()


def test_a_sampling_is_named_by_its_rule_so_another_rules_sampling_is_kept_beside_it() -> None:
    from hackback.base import config
    from hackback.steps import sample

    shipped = sample.rule_of(config.load(flags={}, environ={}))
    assert sample.rule_of(config.load(flags={}, environ={})) == shipped  # the same rule, the same name
    names = {sample.sampling_name("is-roi", shipped),
             sample.sampling_name("is-roi", sample.rule_of(config.load(flags={}, environ={"HACKBACK_SAMPLE_MAX_K": "2"}))),
             sample.sampling_name("is-roi", sample.rule_of(config.load(flags={}, environ={"HACKBACK_SAMPLE_ALLOCATION": "equal"})))}
    assert len(names) == 3 and all(n.startswith("is-roi-r") and len(n) == len("is-roi-r") + 8 for n in names), names
