"""Summarise experiment runs into the markdown tables of docs/RESULTS.md.

Reads ``runs/<prefix>_<arm>_s<seed>/last/bundle.json`` (the final-step validation report written by
``model.train``) and prints, per arm, the mean and sample standard deviation over seeds of each
class's score and of the mean. The final step is reported, not the best step on val: picking
checkpoints on the split we report on would flatter every arm (the public code's mistake).

    .venv/bin/python scripts/experiments/summarize.py mscmr --metric volume_dice
    .venv/bin/python scripts/experiments/summarize.py camvid_scribbles --metric miou --pair pce,stage2 --ratio pce,full

Without ``--cv``, ``--pair A,B`` prints the per-seed differences B - A of the mean score (the seeds both arms
have) and ``--ratio A,B`` the ratio of the arms' mean scores (scribbles over full supervision).

``--cv`` summarises the cross-validation runs of ``mscmr_cv.sh`` (``runs/<prefix>_<arm>_f<fold>_s<seed>/``,
eval reports in ``eval/``): per arm and evaluation-time option (plain, flip, lcc, flip_lcc), the mean
volume Dice over the held-out subjects of the finished folds (scored on their scribble pixels) and
over the 5 val subjects (dense masks), mean +- sample std over the seeds that have every fold (a seed
with only some folds is named but left out of the mean, unless the arm has no complete seed: a screen);
then, for each ``--pair A,B`` (``arm`` or ``arm@option``), the per-subject differences B - A (each
subject's score averaged over the (seed, fold) runs both have, so a one-fold screen meets its parent's
same-fold models on val) with a Wilcoxon signed-rank and a paired t-test. Subjects, not seeds, are the
paired units: the question is whether a setting helps on unseen subjects.

    .venv/bin/python scripts/experiments/summarize.py mscmrcv --cv --pair pce,stage2 --pair stage2,stage2@lcc

``--cv --metric miou`` does the same for ``camvid_cv.sh`` (dense masks on both sides): CamVid's held-out
units are the folds (contiguous runs of one drive; each fold's mIoU), and on val each fold's model is a
unit, so a pair is B - A per fold, averaged over the seeds both arms have. mIoU is a dataset-level score
and neighbouring frames are near-copies: frames are not independent units.

    .venv/bin/python scripts/experiments/summarize.py camvidcv --cv --metric miou --runs results/camvid_cv \
        --pair pce,stage2
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

POSTS = ("plain", "flip", "lcc", "flip_lcc")


def _subject_scores(report: dict[str, Any]) -> dict[str, float]:
    """Per subject (``report["volumes"]``): mean volume Dice over the classes not excluded from the mean."""
    excluded = set(report.get("excluded_from_mean", []))
    out = {}
    for subject, per_class in report.get("volumes", {}).items():
        vals = [v for c, v in per_class.items() if c not in excluded and v is not None]
        if vals:
            out[subject] = statistics.mean(vals)
    return out


def _unit_scores(report: dict[str, Any], metric: str, where: str, fold: int) -> dict[str, float]:
    """The paired units of one eval report: subjects (volume Dice), or the fold itself (mIoU)."""
    if metric == "volume_dice":
        return _subject_scores(report)
    key = "miou" if metric == "miou" else "mean_dice"
    return {f"{where}_f{fold}": float(report[key])} if report.get(key) is not None else {}


def _cv_runs(runs: Path, prefix: str,
             metric: str = "volume_dice") -> dict[tuple[str, str, str], dict[tuple[int, int], dict[str, float]]]:
    """``{(arm, post, where): {(seed, fold): {subject: score}}}`` over finished runs, where = heldout | val.

    A held-out subject is scored by the one run whose fold holds it out; a val subject by every fold's run.
    Keeping the run (seed, fold) lets a comparison pair the same runs of two arms: a screen on fold 0 is set
    against its parent's fold-0 models on val, not against the mean of the parent's five.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}_(?P<arm>.+)_f(?P<fold>\d+)_s(?P<seed>\d+)$")
    out: dict[tuple[str, str, str], dict[tuple[int, int], dict[str, float]]] = defaultdict(dict)
    for d in sorted(runs.iterdir()) if runs.is_dir() else []:
        m = pattern.match(d.name)
        meta = d / "last" / "bundle.json"
        if not m or not meta.is_file() or json.loads(meta.read_text())["provenance"]["status"] != "completed":
            continue
        for where in ("heldout", "val"):
            for post in POSTS:
                rep = d / "eval" / f"{where}_{post}" / "report.json"
                if rep.is_file():
                    out[(m["arm"], post, where)][(int(m["seed"]), int(m["fold"]))] = \
                        _unit_scores(json.loads(rep.read_text()), metric, where, int(m["fold"]))
    return dict(out)


def _per_seed(runs: dict[tuple[int, int], dict[str, float]]) -> dict[int, dict[str, float]]:
    """One score per subject per seed: a held-out subject has one run; a val subject is averaged over folds."""
    lists: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (seed, _), scores in runs.items():
        for subject, v in scores.items():
            lists[seed][subject].append(v)
    return {seed: {subj: statistics.mean(v) for subj, v in per.items()} for seed, per in lists.items()}


def _complete_seeds(runs: dict[tuple[int, int], dict[str, float]], all_folds: set[int]) -> tuple[set[int], str]:
    """The seeds that enter an arm's mean +- std, and how the table names them.

    A seed with only some folds scores only those folds' subjects; averaging it with complete seeds would mix
    subject sets and move the mean by which folds happen to be done. So where an arm has complete seeds, only
    they are averaged and the partial ones are named as left out; a screen (no complete seed) keeps its
    partial seeds, named with their folds.
    """
    folds: dict[int, set[int]] = defaultdict(set)
    for seed, fold in runs:
        folds[seed].add(fold)
    complete = {s for s, fs in folds.items() if fs >= all_folds}
    partial = sorted(set(folds) - complete)
    names = [f"{s}[f{','.join(map(str, sorted(folds[s])))}]" for s in partial]
    if complete:
        cell = ",".join(map(str, sorted(complete)))
        return complete, cell + (f" (not in mean: {' '.join(names)})" if names else "")
    return set(partial), " ".join(names) + (" partial" if names else "")


def _fmt(vals: list[float]) -> str:
    if not vals:
        return "n/a"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.4f} ± {sd:.4f}"


def _paired(a: dict[tuple[int, int], dict[str, float]],
            b: dict[tuple[int, int], dict[str, float]]) -> tuple[list[float], list[tuple[int, int]]]:
    """Per-subject B - A, each subject's scores averaged over the (seed, fold) runs that both arms have."""
    common = sorted(set(a) & set(b))
    diffs = []
    for subject in sorted({s for run in common for s in a[run]}):
        pairs = [(a[r][subject], b[r][subject]) for r in common if subject in a[r] and subject in b[r]]
        if pairs:
            diffs.append(statistics.mean(y for _, y in pairs) - statistics.mean(x for x, _ in pairs))
    return diffs, common


def cv_summary(runs: Path, prefix: str, pairs: list[str], metric: str = "volume_dice") -> None:
    from scipy import stats

    data = _cv_runs(runs, prefix, metric)
    unit = "subject" if metric == "volume_dice" else "fold"
    if not data:
        raise SystemExit(f"no finished runs named {prefix}_<arm>_f<fold>_s<seed> with eval reports under {runs}")
    arms = sorted({arm for arm, _, _ in data})
    for pair in pairs:  # a typo would otherwise read as "fewer than two paired subjects"
        if pair.count(",") != 1:
            raise SystemExit(f"--pair {pair}: is not ARM,ARM")
        for side in pair.split(","):
            arm, _, post = side.partition("@")
            if arm not in arms or (post and post not in POSTS):
                raise SystemExit(f"--pair {pair}: {side!r} is not ARM[@{'|'.join(POSTS)}] "
                                 f"with ARM one of {', '.join(arms)}")
    done: dict[str, set[str]] = defaultdict(set)
    for d in runs.iterdir():
        m = re.match(rf"^{re.escape(prefix)}_(?P<arm>.+)_(?P<fs>f\d+_s\d+)$", d.name)
        if m and (d / "eval" / "heldout_plain" / "report.json").is_file():
            done[m["arm"]].add(m["fs"])
    for arm in arms:
        print(f"{arm}: finished fold/seed runs {', '.join(sorted(done[arm]))}")
    print()
    all_folds = {fold for (_, _, where), rs in data.items() if where == "heldout" for _, fold in rs}
    print(f"| arm | option | seeds | held-out {unit}s | CV (held-out, {metric}) | val ({metric}) |")
    print("|---|---|---|---|---|---|")
    for arm in arms:
        for post in POSTS:
            held_runs = data.get((arm, post, "heldout"), {})
            keep, seeds_cell = _complete_seeds(held_runs, all_folds)
            held = {s: v for s, v in _per_seed(held_runs).items() if s in keep}
            val = {s: v for s, v in _per_seed(data.get((arm, post, "val"), {})).items() if s in keep or not held_runs}
            if not held and not val:
                continue
            n_subj = "/".join(map(str, sorted({len(v) for v in held.values()}))) or "-"
            cv = _fmt([statistics.mean(v.values()) for v in held.values()])
            print(f"| {arm} | {post} | {seeds_cell or ','.join(map(str, sorted(val)))} | {n_subj} | {cv} | "
                  f"{_fmt([statistics.mean(v.values()) for v in val.values()])} |")
    for pair in pairs:
        left, _, right = pair.partition(",")
        (arm_a, _, post_a), (arm_b, _, post_b) = left.partition("@"), right.partition("@")
        print(f"\n{right} - {left} (per-{unit} differences, mean over the runs both arms have):")
        for where in ("heldout", "val"):
            diffs, common = _paired(data.get((arm_a, post_a or "plain", where), {}),
                                   data.get((arm_b, post_b or "plain", where), {}))
            if len(diffs) < 2:
                print(f"  {where}: fewer than two paired {unit}s")
                continue
            nonzero = [d for d in diffs if d != 0]
            w_p = stats.wilcoxon(nonzero).pvalue if len(nonzero) >= 2 else math.nan
            t_p = stats.ttest_rel([0.0] * len(diffs), diffs).pvalue if statistics.pstdev(diffs) > 0 else math.nan
            wins = sum(d > 0 for d in diffs)
            runs_ = " ".join(f"f{f}_s{sd}" for sd, f in common)
            print(f"  {where}: n={len(diffs)} {unit}s, runs {runs_}: mean diff {statistics.mean(diffs):+.4f} "
                  f"(median {statistics.median(diffs):+.4f}), B better on {wins}/{len(diffs)}, "
                  f"Wilcoxon p={w_p:.3g}, paired t p={t_p:.3g}")


def seed_runs(runs: Path, prefix: str, metric: str) -> dict[str, dict[int, dict[str, float | None]]]:
    """``{arm: {seed: {class: score, ..., "mean": score}}}`` from the final-step reports of finished runs."""
    pattern = re.compile(rf"^{re.escape(prefix)}_(?P<arm>.+)_s(?P<seed>\d+)$")
    per_arm: dict[str, dict[int, dict[str, float | None]]] = defaultdict(dict)
    for d in sorted(runs.iterdir()) if runs.is_dir() else []:
        m = pattern.match(d.name)
        meta = d / "last" / "bundle.json"
        if not m or not meta.is_file():
            continue
        prov = json.loads(meta.read_text())["provenance"]
        report = prov["metrics"]["report"]
        if prov["status"] != "completed" or report is None:
            continue
        if metric == "volume_dice":
            per_class = report["volume_dice_per_class"]
            mean = report["mean_volume_dice"]
        else:
            key = "iou" if metric == "miou" else "dice"
            per_class = {c: v[key] for c, v in report["per_class"].items()}
            mean = report["miou"] if metric == "miou" else report["mean_dice"]
        excluded = set(report.get("excluded_from_mean", []))
        per_class = {c: v for c, v in per_class.items() if c not in excluded}
        per_arm[m["arm"]][int(m["seed"])] = {**per_class, "mean": mean}
    if not per_arm:
        raise SystemExit(f"no completed runs named {prefix}_<arm>_s<seed> under {runs}")
    return dict(per_arm)


def seed_summary(per_arm: dict[str, dict[int, dict[str, float | None]]], pairs: list[str],
                 ratios: list[str]) -> None:
    """Per arm mean +- std over seeds; ``--pair A,B``: per-seed B - A of the mean score over the seeds both
    arms have (same seed = same init and data order); ``--ratio A,B``: mean(A) / mean(B) over those seeds.

    Seeds are the paired units here: CamVid's val frames are consecutive frames of a few drives, not
    independent units, and mIoU is a dataset-level score.
    """
    columns = list(next(iter(next(iter(per_arm.values())).values())))
    print(f"| arm | seeds | {' | '.join(columns)} |")
    print("|---|---|" + "---|" * len(columns))
    for arm, seeds in sorted(per_arm.items()):
        cells = []
        for c in columns:
            vals = [v for s in seeds.values() if (v := s[c]) is not None]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}" if vals else "n/a")
        print(f"| {arm} | {','.join(str(s) for s in sorted(seeds))} | {' | '.join(cells)} |")
    print()
    for arm, seeds in sorted(per_arm.items()):
        print(f"{arm}: " + ", ".join(f"s{s}={v['mean']:.4f}" for s, v in sorted(seeds.items())))
    for spec, what in [(p, "pair") for p in pairs] + [(r, "ratio") for r in ratios]:
        a, _, b = spec.partition(",")
        if a not in per_arm or b not in per_arm:
            print(f"\n{spec}: arm {(a if a not in per_arm else b)!r} has no finished run")
            continue
        common = sorted(set(per_arm[a]) & set(per_arm[b]))
        xs = [float(per_arm[a][s]["mean"] or 0.0) for s in common]
        ys = [float(per_arm[b][s]["mean"] or 0.0) for s in common]
        if not common:
            print(f"\n{spec}: no seed in common")
        elif what == "pair":
            diffs = [y - x for x, y in zip(xs, ys, strict=True)]
            per_seed = ", ".join(f"s{s} {d:+.4f}" for s, d in zip(common, diffs, strict=True))
            wins = sum(d > 0 for d in diffs)
            print(f"\n{b} - {a} per seed ({per_seed}): mean {_fmt(diffs)}, {b} better at {wins}/{len(diffs)} seeds")
        else:
            mx, my = statistics.mean(xs), statistics.mean(ys)
            print(f"\n{a} / {b} over seeds {','.join(map(str, common))}: {mx:.4f} / {my:.4f} = {mx / my:.3f} "
                  f"(per seed {', '.join(f'{x / y:.3f}' for x, y in zip(xs, ys, strict=True))})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefix", help="run name prefix, e.g. mscmr")
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--metric", choices=["volume_dice", "miou", "dice"], default="volume_dice")
    ap.add_argument("--cv", action="store_true",
                    help="cross-validation runs of mscmr_cv.sh (volume Dice) or camvid_cv.sh (--metric miou)")
    ap.add_argument("--pair", action="append", default=[], metavar="A,B",
                    help="paired B - A: with --cv per subject (arms as ARM or ARM@plain|flip|lcc|flip_lcc), "
                         "otherwise per seed")
    ap.add_argument("--ratio", action="append", default=[], metavar="A,B",
                    help="without --cv: mean score of A over that of B, over the seeds both have")
    args = ap.parse_args()
    if args.cv:
        cv_summary(args.runs, args.prefix, args.pair, args.metric)
        return
    seed_summary(seed_runs(args.runs, args.prefix, args.metric), args.pair, args.ratio)


if __name__ == "__main__":
    main()
