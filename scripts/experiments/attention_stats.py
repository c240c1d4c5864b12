"""How a trained model's patch attention could carry labels: per-stage statistics on dense ground truth.

For every validation image and stage l it computes A_l (mean over heads and blocks) and reports:
  * same_class: the share of each query's attention that lands on keys of the query's own class
    (classes of the query/key cells from the dense mask, majority per cell) - the quantity the
    affinity loss relies on: attention that stays inside a class propagates correct labels.
    Averaged per query class first, then over the classes present (macro), so the large
    background does not dominate; ``chance`` is the same macro average of the classes' key shares,
    what attention blind to content would score;
  * self: the share on the query's own key cell (stage 4 has no spatial reduction, so attention
    collapsing onto itself makes Y = P and the affinity loss trivially zero);
  * entropy: mean row entropy in nats (uniform over the key grid would be log M').
Means are over query cells, then images. Compare a pCE-only model with a SASFormer one.

    .venv/bin/python scripts/experiments/attention_stats.py runs/mscmr_pce_s0/last runs/mscmr_sasformer_s0/last \
        --data mscmr:../shared/data/mscmr_scribble --split val
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from model import load_bundle
from model.data import load_dataset
from model.preprocess import normalize, pad_to_multiple


def cell_classes(dense: np.ndarray, grid: tuple[int, int], n: int, padded: tuple[int, int]) -> torch.Tensor:
    """Majority class per cell of a grid over the padded image; -1 where the cell is void/padding."""
    h, w = dense.shape
    lab = torch.full(padded, 255, dtype=torch.long)
    lab[:h, :w] = torch.from_numpy(dense.astype(np.int64))
    onehot = F.one_hot(lab.clamp(max=n), n + 1).permute(2, 0, 1).float()[None]
    votes = F.adaptive_avg_pool2d(onehot, grid)[0, :n]  # (n, gh, gw) class shares, void left out
    cls = votes.argmax(0)
    cls[votes.sum(0) < 0.5] = -1
    return cls.flatten()


@torch.inference_mode()
def stats(bundle: str, data: str, split: str, limit: int | None) -> dict:
    model, meta = load_bundle(bundle)
    ds = load_dataset(data, split)
    n = meta.config.num_classes
    acc: dict[int, dict[str, list[float]]] = {
        s: {"same_class": [], "chance": [], "self": [], "entropy": []} for s in range(1, 5)
    }
    for i, sample in enumerate(ds):
        if limit is not None and i >= limit:
            break
        x = normalize(sample.image, meta.config.mean, meta.config.std)[None]
        x, _ = pad_to_multiple(x, 32)
        _, maps = model(x, return_attention=True)
        for s, a in enumerate(maps, start=1):
            _, hq, wq, hk, wk = a.shape
            a = a.reshape(hq * wq, hk * wk)
            q_cls = cell_classes(sample.dense, (hq, wq), n, tuple(x.shape[-2:]))
            k_cls = cell_classes(sample.dense, (hk, wk), n, tuple(x.shape[-2:]))
            same = (a * (k_cls[None, :] == q_cls[:, None]).float()).sum(1)
            per_class, chance = [], []
            for c in q_cls.unique().tolist():
                if c < 0:
                    continue
                per_class.append(float(same[q_cls == c].mean()))
                chance.append(float((k_cls == c).float().mean()))
            acc[s]["same_class"].append(float(np.mean(per_class)))
            acc[s]["chance"].append(float(np.mean(chance)))
            ent = -(a.clamp_min(1e-12) * a.clamp_min(1e-12).log()).sum(1)
            acc[s]["entropy"].append(float(ent.mean()))
            if (hq, wq) == (hk, wk):
                acc[s]["self"].append(float(a.diagonal().mean()))
    return {f"stage{s}": {k: (float(np.mean(v)) if v else None) for k, v in d.items()} for s, d in acc.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    args = ap.parse_args()
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    results = {b: stats(b, args.data, args.split, args.limit) for b in args.bundles}
    print("| model | stage | same-class share (macro) | chance | self share | entropy (nats) |")
    print("|---|---|---|---|---|---|")
    for b, r in results.items():
        for stage, v in r.items():
            self_share = "-" if v["self"] is None else f"{v['self']:.3f}"
            print(f"| {b} | {stage[-1]} | {v['same_class']:.3f} | {v['chance']:.3f} | {self_share} "
                  f"| {v['entropy']:.2f} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
