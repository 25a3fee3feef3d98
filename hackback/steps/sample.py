"""`hackback sample --checkpoint NAME`: SimPoint in full system, from a
checkpoint saved at a region of interest's start (`hackback suite npb --members
is --save-checkpoint NAME`). Each part is an artifact with its manifest, so a
rerun is a no-op and a new CPU or cache configuration reruns only the samples:

1. profile   profiles/<cpt>-b<N>/   the ROI on atomic with gem5's SimPoint probe,
             basic-block vectors of N instructions to the ROI's m5 workend;
2. sampling  samplings/<cpt>-r<R>/  one per rule R (a digest of [sample]'s keys):
             the choice (hackback.services.sampling: SimPoint's method with
             scikit-learn's k-means, stratified samples), then one
             atomic pass from the same checkpoint that saves a checkpoint before
             each sample (less its warm-ups) and goes on to the ROI's end, whose
             instruction count must be the profile's: both are the same atomic
             stream, so the samples start from exact states;
3. samples   runs/<cpt>-sNN-...     each sample checkpoint restored: atomic with
             the caches (functional warm-up), the detailed CPU's warm-up, then
             exactly the interval, measured; a batch (-j, or --on slurm: one
             job array, the estimate once every sample is back);
4. estimate  estimates/<sampling>-<board>/  the weighted CPI, its 95% interval
             from the samples' spread, miss rates, beside the full detailed run
             from the same checkpoint when one is there (or asked for: --reference).

Sampling is single-core: gem5's probe counts one core's instructions."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..services import gem5run, pmem, sampling
from ..base import log
from . import cluster, restore
from ..store.build import Target, build_unless_fresh, keep_failed
from ..store.hashes import digest_of, file_record
from ..store.layout import Kind
from ..store.manifest import Manifest
from .checkpoint import asked_for as checkpoint_asked_for
from ..base.config import Config
from ..protocol.context import StepContext
from ..base.errors import ArtifactError, MismatchError, UsageError
from ..protocol.step import Request, Step
from ..store.records import (GEM5_KERNEL, Board, CheckpointArtifact, EnvArtifact, EstimateInfo,
                             Gem5Result, ProfileInfo, RunRecord, RunResult, SampleAt, SampleRef, SamplingInfo)

BBV = "simpoint.bb.gz"  # what gem5's SimPoint probe writes into its outdir


def check(cpt: CheckpointArtifact) -> None:
    """What sampling needs of a checkpoint, refused in one line otherwise."""
    if not cpt.info.in_roi:
        raise UsageError(f"checkpoint '{cpt.name}' was not saved at a region of interest's start",
                         "sample from one that was: hackback suite npb --members is --save-checkpoint is-roi "
                         "(or hackback restore --save-checkpoint NAME with restore.save_at = \"workbegin\")")
    if cpt.info.board.cores != 1:
        raise UsageError(f"checkpoint '{cpt.name}' has {cpt.info.board.cores} cores; sampling here is single-core",
                         "gem5's SimPoint probe counts one core's instructions: take a 1-core checkpoint")


def rule_of(cfg: Config) -> sampling.Rule:
    s = cfg.sample
    return sampling.Rule(base_interval=s.base_interval, intervals=s.intervals, max_k=s.max_k, per_cluster=s.per_cluster,
                         allocation=s.allocation,
                         detailed_warmup=s.detailed_warmup_percent / 100, functional_warmup=s.functional_warmup,
                         functional_intervals=s.functional_intervals, seed=s.seed)


def run(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, force: bool = False) -> Optional[EstimateInfo]:
    """The estimate; None when the samples went to Slurm and are not all back yet.
    force (--force): the profile, the sampling and the samples made again."""
    check(cpt)
    rule = rule_of(ctx.cfg)
    prof_dir, prof = profile(ctx, env, cpt, rule.base_interval, force)
    samp_dir, chosen = choose_and_checkpoint(ctx, env, cpt, prof_dir, prof, rule, force)
    samples = [CheckpointArtifact.of_sample(cpt, samp_dir, chosen, i) for i in range(len(chosen.samples))]
    batch = [_plan(ctx, env, s, force) for s in samples]
    if ctx.cfg.restore.on == "slurm":
        # One job array; each task finds its sample checkpoint from these (it has no directory of its own).
        made = Manifest.read(samp_dir)
        assert made is not None  # just built, or found up to date
        where = {plan.rid: SampleRef(cpt.directory, samp_dir, i, made.inputs_digest("sampling"))
                 for i, (_, plan) in enumerate(batch)}
        back = {r.run_id: r for r in cluster.submit(ctx, batch[0][0], [p for _, p in batch], where)}
        if len(back) < len(batch):
            log.info(f"{sum(r.ok for r in back.values())} of {len(batch)} samples measured; the estimate comes when all "
                     "are: run this command again once the job is done (or with --wait to follow it)")
            return None
        results = [back[p.rid] for _, p in batch]  # in the samples' order, as the estimate pairs them
    else:
        results = restore.run_batch(batch, ctx.cfg.restore.jobs)
    ran = _Ran(results, batch[0][0].board)
    return _estimate(ctx, cpt.name, samp_dir.name, chosen, prof, ran, _reference(ctx, env, cpt))


@dataclass(frozen=True)
class _Ran:
    """The samples' runs and the board they ran on."""

    results: Sequence[RunResult]
    board: Board


@dataclass(frozen=True)
class _Pass:
    """An atomic pass over the ROI: what it is called, its run-script options, where a failure's logs go."""

    what: str
    extra: tuple[str, ...]
    keep: tuple[Kind, str]


# ---------------------------------------------------------------- 1. the profile


def profile(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, base: int,
            force: bool = False) -> tuple[Path, ProfileInfo]:
    g = env.gem5()
    want = {"checkpoint": cpt.identity_digest(), "gem5_binary_sha256": g.binary_sha256, "base_interval": base,
            "run_script_sha256": gem5run.run_script_sha256()}
    name = f"{cpt.name}-b{base}"

    def build(tmp: Path, manifest: Manifest) -> None:
        board = Board(cpt.info.board.memory, 1, "atomic", in_roi=True)
        result = _atomic(ctx, env, cpt, board, tmp, _Pass(f"profile {cpt.name} (basic-block vectors of {base:,} instructions)",
                                                          ("--simpoint-interval", str(base), "--stop-at-workend"), ("profiles", name)))
        if not (tmp / BBV).is_file():
            raise ArtifactError(f"gem5 wrote no {BBV} profiling {cpt.name}", f"see {tmp / 'gem5.log'}")
        vectors = sampling.read_profile(tmp / BBV)
        info = ProfileInfo(cpt.ref(), base, _workend_insts(result, cpt), vectors.insts, len(vectors.vectors),
                           result.sim_seconds, result.host_seconds)
        manifest.set_part("profile", want, {n: file_record(tmp / n, ctx.hashes) for n in (BBV, "stats.txt", "console.log")
                                            if (tmp / n).is_file()}, info.to_json())

    done = build_unless_fresh(ctx.layout, Target("profiles", name, "profile", f"profile {name}"), want, force, build)
    info = ProfileInfo.of(done.manifest)
    log.info(f"profile {name}: the ROI is {info.roi_insts:,} instructions, {info.intervals:,} intervals of {base:,} "
             f"profiled ({info.host_seconds:.0f} host s)")
    return done.directory, info


def _workend_insts(result: Gem5Result, cpt: CheckpointArtifact) -> int:
    ends = [i for i in result.work_items if i.kind == "workend" and i.insts is not None]
    if not ends:
        raise UsageError(f"the region of interest restored from '{cpt.name}' never reached its m5 workend",
                         "sampling measures a ROI marked with m5 workbegin and workend")
    return int(ends[0].insts or 0)


# ---------------------------------------------------------------- 2. the choice and the sample checkpoints


def choose_and_checkpoint(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, prof_dir: Path, prof: ProfileInfo,
                          rule: sampling.Rule, force: bool = False) -> tuple[Path, SamplingInfo]:
    g = env.gem5()
    manifest = Manifest.read(prof_dir)
    assert manifest is not None
    want = {"checkpoint": cpt.identity_digest(), "profile": digest_of(manifest.outputs_of("profile")),
            "rule": dataclasses.asdict(rule), "gem5_binary_sha256": g.binary_sha256,
            "run_script_sha256": gem5run.run_script_sha256()}
    name = sampling_name(cpt.name, rule)

    def build(tmp: Path, out: Manifest) -> None:
        factor = rule.factor(prof.roi_insts)
        choice = sampling.choose(sampling.merged(sampling.read_profile(prof_dir / BBV), factor), rule)
        interval = factor * rule.base_interval
        warm = rule.detailed_warmup_insts(prof.roi_insts, sum(s.length for s in choice.samples), len(choice.samples), interval)
        samples = [_placed(s, choice, interval, warm, rule) for s in choice.samples]
        counts = sorted({s.at for s in samples})
        board = Board(cpt.info.board.memory, 1, "atomic", in_roi=True)
        extra = ("--checkpoint-dir", gem5run.OUT_MNT, "--checkpoints-at", ",".join(map(str, counts)), "--stop-at-workend")
        result = _atomic(ctx, env, cpt, board, tmp, _Pass(f"sample checkpoints of {cpt.name} ({len(counts)}, k={choice.k})",
                                                          extra, ("samplings", name)))
        at_cpt = _saved(result, counts, prof, cpt, tmp)
        _unpack_memory(ctx, [tmp / c for c in at_cpt.values()])
        files = sorted(p for c in at_cpt.values() for p in (tmp / c).rglob("*") if p.is_file())
        if cpt.info.gem5_kernel:
            os.link(cpt.directory / GEM5_KERNEL, tmp / GEM5_KERNEL)
            ctx.hashes.linked(cpt.directory / GEM5_KERNEL, tmp / GEM5_KERNEL)
            files.append(tmp / GEM5_KERNEL)
        info = SamplingInfo(cpt.ref(), interval, len(choice.labels), choice.k, choice.weights, choice.bics, tuple(samples),
                            tuple(at_cpt[s.at] for s in samples), prof.roi_insts, dataclasses.asdict(rule),
                            result.host_seconds, prof.host_seconds)
        out.set_part("sampling", want, {str(p.relative_to(tmp)): file_record(p, ctx.hashes) for p in files}, info.to_json())

    done = build_unless_fresh(ctx.layout, Target("samplings", name, "sampling", f"sampling {name}"), want, force, build)
    info = SamplingInfo.of(done.manifest)
    detailed = sum(s.length + s.detailed_warmup for s in info.samples)
    log.info(f"sampling {name}: {info.intervals} intervals of {info.interval:,} instructions, k = {info.k}, "
             f"{len(info.samples)} samples; detailed instructions {detailed:,} = {detailed / info.roi_insts:.1%} of the ROI")
    return done.directory, info


def sampling_name(checkpoint: str, rule: sampling.Rule) -> str:
    """samplings/<cpt>-r<rule>: one per rule, so a sampling made by another rule
    (and the estimates named after it) is kept beside it, not overwritten."""
    return f"{checkpoint}-r{digest_of(dataclasses.asdict(rule))[:8]}"


def _placed(s: sampling.Sample, choice: sampling.Choice, interval: int, warm: int, rule: sampling.Rule) -> SampleAt:
    """Where a sample's checkpoint goes: before it, the detailed warm-up and before
    that the functional one, as far as the ROI's start leaves room (at least one
    instruction in: a checkpoint at 0 would be the ROI's own)."""
    detailed = min(warm, max(0, s.start - 1))
    functional = max(0, min(max(rule.functional_warmup, rule.functional_intervals * interval), s.start - detailed - 1))
    at = max(1, s.start - detailed - functional)
    return SampleAt(s.interval, s.cluster, choice.weights[s.cluster], s.start, s.length, at, max(0, s.start - detailed - at),
                    detailed, s.nearest)


def _unpack_memory(ctx: StepContext, cpts: Sequence[Path]) -> None:
    """Each sample checkpoint's memory stored uncompressed and sparse (hackback.services.pmem):
    a sample is restored once per configuration measured, and inflating a 2 GiB memory
    was most of a short sample run's host time."""
    files = sorted(f for c in cpts for f in c.glob("*.pmem") if pmem.is_compressed(f))
    if not files:
        return
    with log.step(f"unpacking the memory of {len(files)} sample checkpoints (sparse: restores without inflating)"):
        # A host-side step, like a build: every core (zlib lets go of the GIL while it inflates).
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            done = list(pool.map(pmem.unpack, files))
    for u in done:
        if u.sparse:
            ctx.hashes.known(u.path, u.sha256)
    kept = [u for u in done if not u.sparse]
    if kept:
        log.warn(f"{len(kept)} sample checkpoints' memory left compressed: this filesystem keeps no holes "
                 f"({kept[0].on_disk:,} bytes on disk for {kept[0].size:,} of memory); their restores inflate it each time")
    else:
        log.info(f"sample checkpoints' memory: {sum(u.size for u in done) / 2**30:.0f} GiB in all, "
                 f"{sum(u.on_disk for u in done) / 2**20:,.0f} MiB on disk")


def _saved(result: Gem5Result, counts: Sequence[int], prof: ProfileInfo, cpt: CheckpointArtifact, tmp: Path) -> dict[int, str]:
    """Each count's checkpoint, checked: saved at that count, and the pass's ROI as long as the profile's."""
    if [c.insts for c in result.checkpoints] != list(counts):
        raise ArtifactError(f"the sampling pass saved its checkpoints at {[c.insts for c in result.checkpoints][:5]}…, not at "
                            f"the counts asked ({list(counts)[:5]}…)", f"see {tmp / 'gem5.log'}")
    ends = _workend_insts(result, cpt)
    if ends != prof.roi_insts:
        raise MismatchError(f"the sampling pass's ROI is {ends:,} instructions, the profile's {prof.roi_insts:,}: they are not "
                            "the same atomic stream", "profile again (hackback clean --kind profiles) and sample")
    for c in result.checkpoints:
        if not (tmp / c.cpt / "m5.cpt").is_file():
            raise ArtifactError(f"gem5 reported {c.cpt} but its m5.cpt is missing", f"see {tmp / 'gem5.log'}")
    return {c.insts: c.cpt for c in result.checkpoints if c.insts is not None}


# ---------------------------------------------------------------- 3 and 4: the samples and the estimate


def _plan(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, force: bool) -> tuple[restore.Restores, restore.Plan]:
    runs, plans = restore.prepare(ctx, env, cpt, [], force=force)
    return runs, plans[0]


def _reference(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact) -> Optional[RunResult]:
    """The full detailed run of the same ROI on the same CPU and caches, from this
    very checkpoint: a restore of it, or with --reference one run now. Never the
    suite's switching run from the parent: it reaches the ROI by another history,
    and gem5's stdlib L1+L2 hierarchy sends page walks past the caches, served from
    them only where a dirty page-table line happens to sit, so the same ROI's CPI
    differs by that history (NPB SP: 0.9855 switching, 1.1538 from its ROI checkpoint)."""
    runs, plans = restore.prepare(ctx, env, cpt, [])
    found = restore.completed(ctx, plans[0])
    if found is None and ctx.cfg.sample.reference:
        found = restore.run_batch([(runs, plans[0])], 1)[0]
    return found


def _estimate(ctx: StepContext, cpt_name: str, name: str, info: SamplingInfo, prof: ProfileInfo, ran: _Ran,
              full: Optional[RunResult]) -> EstimateInfo:
    results, board, wall = ran.results, ran.board, _batch_wall(ran.results)
    measured = [_measured(r, s.cluster) for r, s in zip(results, info.samples)]
    est = sampling.estimate(info.weights, measured)
    full_fig = full.roi.figures if full is not None and full.roi is not None else {}
    full_cpi = full_fig["numCycles"] / full_fig["insts"] if full_fig.get("insts") and full_fig.get("numCycles") else None
    out = EstimateInfo(name, board, est.cpi, est.half_width, est.samples, est.k,
                       sum(s.length + s.detailed_warmup for s in info.samples), info.roi_insts,
                       sum(r.host_seconds for r in results), wall, prof.host_seconds + info.pass_host_seconds,
                       tuple(r.run_id for r in results), est.l1d_miss_rate, est.l2_miss_rate, full_cpi,
                       full.host_seconds if full else None, full.run_id if full else None,
                       full_fig.get("l1d_miss_rate"), full_fig.get("l2_miss_rate"), cpt_name)
    where = _write(ctx, out)
    kept = Manifest.read(where)
    assert kept is not None  # just written, or found up to date
    shown = EstimateInfo.of(kept)  # what the manifest holds: the same on a rerun that found it up to date
    _show(shown, where)
    return shown


def _measured(r: RunResult, cluster: int) -> sampling.Measured:
    if r.roi is None or "insts" not in r.roi.figures or "numCycles" not in r.roi.figures:
        raise ArtifactError(f"sample run {r.run_id} has no measured interval in its stats", f"see {r.directory}")
    f = r.roi.figures
    return sampling.Measured(cluster, f["insts"], f["numCycles"], f.get("l1d_accesses"), f.get("l1d_misses"),
                             f.get("l2_accesses"), f.get("l2_misses"))


def _batch_wall(results: Sequence[RunResult]) -> float:
    """The samples' wall time, from the first one's start to the last one's end by
    the runs' own records (a manifest's time less its container's life): the same
    on a rerun that ran nothing, and for samples that ran as Slurm tasks."""
    starts, ends = [], []
    for r in results:
        rec = RunRecord.read(r.directory)
        if rec is None:
            raise ArtifactError(f"sample run {r.run_id} has no manifest", f"see {r.directory}")
        end = rec.manifest.built_at("run")
        ends.append(end)
        starts.append(end - (rec.info.container_wall_seconds or r.host_seconds))
    return max(ends) - min(starts) if results else 0.0


def _write(ctx: StepContext, est: EstimateInfo) -> Path:
    name = f"{est.sampling}-{est.board.id_part()}-{digest_of(est.board.to_json())[:8]}"
    want = {"runs": list(est.runs), "full_run": est.full_run}
    return build_unless_fresh(ctx.layout, Target("estimates", name, "estimate", f"estimate {name}"), want, False,
                              lambda tmp, m: m.set_part("estimate", want, {}, est.to_json())).directory


def _show(e: EstimateInfo, where: Path) -> None:
    ci = f"{e.cpi:.4f} ± {e.half_width:.4f} (±{e.half_width / e.cpi:.1%})"
    log.info(f"sampled {e.sampling} on {e.board.label()}: CPI {ci}, IPC {1 / e.cpi:.4f}; {e.samples} samples in {e.k} "
             f"clusters; detailed instructions {e.detailed_insts / e.roi_insts:.1%} of the ROI; samples {e.sample_host_seconds:.0f} "
             f"host s ({e.sample_wall_seconds:.0f} s wall), once per ROI {e.one_off_host_seconds:.0f} host s")
    if e.full_cpi is not None and e.error is not None:
        log.info(f"    the full detailed run ({e.full_run}): CPI {e.full_cpi:.4f}: error {e.error:+.2%}, "
                 f"{'inside' if e.covered else 'OUTSIDE'} the 95% interval; {e.full_host_seconds:.0f} host s, "
                 f"{(e.full_host_seconds or 0) / max(e.sample_host_seconds, 1e-9):.1f}x the samples'")
    else:
        log.info("    no full detailed run of this ROI on this board to check it against (--reference runs one)")
    log.info(f"    {where}")


def _atomic(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, board: Board, tmp: Path, how: _Pass) -> Gem5Result:
    """One atomic restore of the ROI checkpoint with extra run-script options (a profile, a sampling pass)."""
    what, extra, keep = how.what, how.extra, how.keep
    g = env.gem5()
    readfile = tmp / restore.READFILE
    readfile.write_bytes(b"")  # inside its script already: the guest reads none
    job = gem5run.Gem5Job(label="gem5:" + keep[0][:-1], env_image=g.env_image, binary=g.binary, mode="restore",
                          kernel=cpt.gem5_kernel(cpt.info.kernel.path), disk=cpt.info.image.path,
                          kernel_args=cpt.info.kernel_args, board=board, out=tmp, checkpoint=cpt.cpt, script=readfile,
                          max_wall_seconds=ctx.cfg.restore.max_wall_seconds, extra=extra)
    restore.verify(cpt, env, cpt.info.kernel.path, cpt.info.image.path, ctx.hashes)
    with log.step(what):
        result = gem5run.run(ctx.engine, job, keep_failed=lambda: keep_failed(ctx.layout, keep[0], keep[1], tmp),
                             prefix=f"{keep[1]}: ")
    (tmp / gem5run.CONSOLE).unlink(missing_ok=True)
    readfile.unlink(missing_ok=True)
    return result


class SampleStep(Step):
    name = "sample"
    needs = ("env", "checkpoint")

    def check(self, ctx: StepContext, req: Request) -> None:
        """From a checkpoint at a ROI's start, single-core: refused before anything builds."""
        found = checkpoint_asked_for(ctx, req)
        if found is None:
            raise UsageError("no checkpoint to sample from", "name one saved at a region of interest: --checkpoint NAME")
        check(found)
        cluster.check_executor(ctx.cfg)

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> Optional[EstimateInfo]:
        return run(ctx, deps["env"], deps["checkpoint"], req.forced(self.name))


SAMPLE = SampleStep()
