#!/usr/bin/env python3
"""How much of a sampled estimate's bias is the detailed warm-up: the samples of
`hackback sample --checkpoint CPT` (the shipped rule's places and intervals)
restored again with DETAILED of each one's warm-up on --cpu instead of the rule's
share (the rest still on atomic), and the weighted estimate beside the shipped
one and the full run from the same checkpoint. An experiment over the shipped
samples, not a rule: it runs `hackback sample` first (a no-op when kept).

    python3 benchmarks/sampling_warmup.py --gem5-src SRC --gem5-binary BIN --work-dir DIR --from sp-roi --detailed 2000000
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from _common import gem5_work_args

from hackback import pipeline
from hackback.protocol.step import Request
from hackback.services import sampling
from hackback.steps import restore, sample as S
from hackback.store.records import CheckpointArtifact

FLAGS = {"restore.cpu": "o3", "restore.caches": "l1l2", "restore.jobs": 2, "sample.reference": True}


def main() -> None:
    ap = gem5_work_args(__doc__.splitlines()[0], "the ROI checkpoint sampled (as for hackback sample)")
    ap.add_argument("--detailed", type=int, default=2_000_000, help="instructions of each sample's warm-up on the detailed CPU")
    args = ap.parse_args()
    os.environ.update(HACKBACK_WORK_DIR=str(Path(args.work_dir).resolve()), HACKBACK_GEM5_SRC=args.gem5_src,
                      HACKBACK_GEM5_BINARY=args.gem5_binary, HACKBACK_PLAIN="1")
    shipped = pipeline.perform(Request(target="sample", flags=FLAGS, checkpoint=args.source))
    S.run = lambda ctx, env, cpt, force=False: _again(ctx, env, cpt, args.detailed, shipped)  # the same steps, other warm-up split
    pipeline.perform(Request(target="sample", flags=FLAGS, checkpoint=args.source))


def _again(ctx, env, cpt, detailed: int, shipped) -> None:  # type: ignore[no-untyped-def]
    rule = S.rule_of(ctx.cfg)
    prof_dir, prof = S.profile(ctx, env, cpt, rule.base_interval)
    samp_dir, chosen = S.choose_and_checkpoint(ctx, env, cpt, prof_dir, prof, rule)
    batch = []
    for i in range(len(chosen.samples)):
        c = CheckpointArtifact.of_sample(cpt, samp_dir, chosen, i)
        at = c.info.sample
        total = at.functional_warmup + at.detailed_warmup
        n = min(detailed, total - 1)
        c = dataclasses.replace(c, info=dataclasses.replace(c.info, sample=dataclasses.replace(
            at, functional_warmup=total - n, detailed_warmup=n)))
        batch.append(S._plan(ctx, env, c, False))
    results = restore.run_batch(batch, ctx.cfg.restore.jobs)
    est = sampling.estimate(chosen.weights, [S._measured(r, s.cluster) for r, s in zip(results, chosen.samples)])
    detail = sum(s.length + detailed for s in chosen.samples) / prof.roi_insts
    full = shipped.full_cpi
    print(f"| warm-up on the detailed CPU | CPI | 95% interval | L2 miss rate | error vs full ({full:.4f}) | detailed % of ROI | samples host s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, cpi, hw, l2, share, host in (
            ("shipped rule", shipped.cpi, shipped.half_width, shipped.l2_miss_rate, shipped.detailed_insts / shipped.roi_insts,
             shipped.sample_host_seconds),
            (f"{detailed:,} each", est.cpi, est.half_width, est.l2_miss_rate, detail, sum(r.host_seconds for r in results))):
        err = f"{(cpi - full) / full:+.2%}" if full else "-"
        print(f"| {label} | {cpi:.4f} | ±{hw / cpi:.1%} | {l2 if l2 is None else f'{l2:.4f}'} | {err} | {share:.0%} | {host:.0f} |")


if __name__ == "__main__":
    main()
