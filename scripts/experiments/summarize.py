"""Summarise experiment runs into the markdown tables of docs/RESULTS.md.

Reads ``runs/<prefix>_<arm>_s<seed>/last/bundle.json`` (the final-step validation report written by
``model.train``) and prints, per arm, the mean and sample standard deviation over seeds of each
class's score and of the mean. The final step is reported, not the best step on val: picking
checkpoints on the split we report on would flatter every arm (the public code's mistake).

    .venv/bin/python scripts/experiments/summarize.py mscmr --metric volume_dice
    .venv/bin/python scripts/experiments/summarize.py camvid_scribbles --metric miou
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefix", help="run name prefix, e.g. mscmr")
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--metric", choices=["volume_dice", "miou", "dice"], default="volume_dice")
    args = ap.parse_args()
    pattern = re.compile(rf"^{re.escape(args.prefix)}_(?P<arm>.+)_s(?P<seed>\d+)$")
    per_arm: dict[str, dict[int, dict]] = defaultdict(dict)
    for d in sorted(args.runs.iterdir()):
        m = pattern.match(d.name)
        meta = d / "last" / "bundle.json"
        if not m or not meta.is_file():
            continue
        prov = json.loads(meta.read_text())["provenance"]
        report = prov["metrics"]["report"]
        if prov["status"] != "completed" or report is None:
            continue
        if args.metric == "volume_dice":
            per_class = report["volume_dice_per_class"]
            mean = report["mean_volume_dice"]
        else:
            key = "iou" if args.metric == "miou" else "dice"
            per_class = {c: v[key] for c, v in report["per_class"].items()}
            mean = report["miou"] if args.metric == "miou" else report["mean_dice"]
        excluded = set(report.get("excluded_from_mean", []))
        per_class = {c: v for c, v in per_class.items() if c not in excluded}
        per_arm[m["arm"]][int(m["seed"])] = {**per_class, "mean": mean}
    if not per_arm:
        raise SystemExit(f"no completed runs named {args.prefix}_<arm>_s<seed> under {args.runs}")
    columns = list(next(iter(next(iter(per_arm.values())).values())))
    print(f"| arm | seeds | {' | '.join(columns)} |")
    print("|---|---|" + "---|" * len(columns))
    for arm, seeds in sorted(per_arm.items()):
        cells = []
        for c in columns:
            vals = [s[c] for s in seeds.values() if s[c] is not None]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}" if vals else "n/a")
        print(f"| {arm} | {','.join(str(s) for s in sorted(seeds))} | {' | '.join(cells)} |")
    print()
    for arm, seeds in sorted(per_arm.items()):
        print(f"{arm}: " + ", ".join(f"s{s}={v['mean']:.4f}" for s, v in sorted(seeds.items())))


if __name__ == "__main__":
    main()
