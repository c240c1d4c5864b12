"""Does a fine-tune job drift? Held-out Dice of a project's *unlabelled* images after job-recipe fine-tunes of
10 s and 120 s from a trained seed, side by side in one run: the recipe jobs use now (``encoder="auto"``: a
trained encoder is frozen below 5 labelled images; KL to the seed on unlabelled pixels, ``keep_base``;
held-out labelled pixels pick the best step), the same without the keep-base term, and with the encoder
trained and no keep-base term (what jobs did before).

The project session of ``bench/interactive.py`` (MSCMR val, K labelled images with simulated scribbles, M other
images scored on their dense masks): the drift the issue reports (a trained base fine-tuned longer got worse on
the unlabelled images) is what the "120 s / 10 s" column shows; >= 1.00 means no drift.

    .venv/bin/python bench/finetune_drift.py \
        --seed-bundle runs/mscmrcv_pce_f1_s0/last   # any trained MSCMR bundle (here: a CV run's)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.interactive import dataset_specs, pick_images, with_sparse  # noqa: E402
from bench.interactive_lib import score  # noqa: E402
from jobs.holdout import split_labels  # noqa: E402
from model import IGNORE_INDEX, Predictor, load_bundle, read_bundle_meta  # noqa: E402
from model.config import TrainConfig  # noqa: E402
from model.data import DatasetSplit, Sample, load_dataset  # noqa: E402
from model.train import train  # noqa: E402


def heldout_dice(bundle: str, images: list[Sample], classes: list[str]) -> float:
    predictor = Predictor(load_bundle(bundle)[0], device="cpu")
    preds = [predictor.predict(s.image).class_map for s in images]
    gts = [s.dense for s in images if s.dense is not None]
    assert len(gts) == len(images), "every scored image needs its dense mask"
    return float(score(preds, gts, classes, exclude=(0,))["mean_dice"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed-bundle", required=True, help="a trained bundle (the project's active version)")
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--k", type=int, default=2, help="labelled images")
    ap.add_argument("--m", type=int, default=4, help="unlabelled images scored")
    ap.add_argument("--budgets", default="10,120")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = dataset_specs(args.data_root)["mscmr"]
    val = load_dataset(ds.spec, "val")
    classes = val.classes.names
    labelled = with_sparse(pick_images(val, args.k, ds.exclude, offset=1), "scribbles", args.seed)
    held = [s for s in pick_images(val, args.m + args.k + 1, ds.exclude, offset=3)
            if s.name not in {x.name for x in labelled}][: args.m]
    split = split_labels([s.sparse for s in labelled], [s.name for s in labelled], 0.2, args.seed)  # type: ignore[misc]
    train_split = DatasetSplit(val.classes, [Sample(s.name, s.image, sparse=t) for s, t in
                                             zip(labelled, split.train, strict=True) if (t != IGNORE_INDEX).any()])
    check = DatasetSplit(val.classes, [Sample(s.name, s.image, sparse=h) for s, h in
                                       zip(labelled, split.heldout, strict=True) if (h != IGNORE_INDEX).any()])
    meta = read_bundle_meta(args.seed_bundle)
    budgets = [float(b) for b in args.budgets.split(",")]
    base = heldout_dice(args.seed_bundle, held, classes)
    print(f"MSCMR project session: {args.k} labelled val images (simulated scribbles, seed {args.seed}), "
          f"{len(held)} unlabelled scored on dense masks; seed {args.seed_bundle}: mean Dice {base:.3f} "
          f"({time.strftime('%Y-%m-%d')})")
    rows = []
    arms = (("job recipe (encoder auto, keep base)", "auto", True), ("encoder auto, no keep-base term", "auto", False),
            ("encoder trained, no keep-base term", "train", False))
    for name, encoder, keep_base in arms:
        scores = {}
        for budget in budgets:
            with tempfile.TemporaryDirectory() as out:
                cfg = TrainConfig.for_interactive(
                    meta.config, steps=300, batch_size=4, crop_size=256, seed=args.seed, from_random=False,
                    init_bundle=args.seed_bundle, time_budget_s=budget, out_dir=out, device="cpu",
                    labelled_images=len(labelled), encoder=encoder,  # type: ignore[arg-type]
                    base_used_affinity=True, keep_base=keep_base)
                res = train(cfg, train_split, check if len(check) else None, progress_bar=False)
                scores[budget] = heldout_dice(str(res.bundle), held, classes)
                print(f"  {name}, {budget:.0f} s: {res.steps_done} steps, best step {res.best_step}, "
                      f"frozen encoder {cfg.freeze_encoder}, keep-base weight {cfg.keep_base_weight}: "
                      f"Dice {scores[budget]:.3f}", flush=True)
        rows.append((name, scores))
    head = " | ".join(f"{b:.0f} s" for b in budgets)
    print(f"\n| recipe | 0 s (seed) | {head} | {budgets[-1]:.0f} s / {budgets[0]:.0f} s |")
    print("|---|---:|" + "---:|" * len(budgets) + "---:|")
    for name, scores in rows:
        cells = " | ".join(f"{scores[b]:.3f}" for b in budgets)
        print(f"| {name} | {base:.3f} | {cells} | {scores[budgets[-1]] / max(scores[budgets[0]], 1e-9):.2f} |")


if __name__ == "__main__":
    main()
