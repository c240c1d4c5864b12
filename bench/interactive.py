"""Interactive quality benchmark (issue 8): dense masks from a few scribbles, SASFormer vs an ilastik-style forest.

The number users care about: how good the dense mask is after N scribbles and T seconds of waiting,
against what they would otherwise use -- ilastik's pixel classification (a random forest on multi-scale
filter features), here scikit-image's library version of it (``bench/interactive_lib.py``).

Three parts, all on the same images and the same sparse labels for both methods:

1. **Budget sessions.** *per-image*: labels of one image, predict that image; *project*: labels of K
   images, predict M other images. SASFormer is fine-tuned with ``model.train.train`` for a wall-clock
   budget (``TrainConfig.time_budget_s``) from scratch and from a warm start (a model trained on the
   other split: MSCMR train's real human scribbles / CamVid train with simulated scribbles); the warm
   model is also scored with no fine-tuning (budget 0). The forest runs with two settings: ilastik's
   size (100 full-depth trees) and scikit-image's example (50 trees, depth 10, 5% bootstrap), which
   trade quality for time. Scored with mIoU / mean Dice against the dense masks (MSCMR: mean of RV,
   Myo, LV, the dataset's usual metric; CamVid: all 11 classes, void ignored), wall time, peak RSS.
2. **Simulated annotator (NoC).** Start with one scribble per class; each round add one scribble along
   the skeleton of the largest connected wrong region with its true class, refit / fine-tune (a fixed
   budget per round, continuing from the last round's weights), and count scribbles to reach target
   Dice. Rows: forest, SASFormer warm, and SASFormer picking its own next location (largest region of
   its most uncertain pixels; the annotator labels it with the true class).
3. **Report.** JSON in ``runs/bench_interactive/<mode>/``, a quality-vs-time PNG in ``docs/``, tables in
   ``docs/PERFORMANCE.md`` under "## Interactive quality" (other sections untouched).

Sparse labels: MSCMR val has dense masks only, so its scribbles are *simulated* from them with the
project's simulator (``model.data.simulate_scribbles``), as are CamVid's scribbles and points
(``simulate_points``). MSCMR train's real human scribbles are used only to train the warm-start model.

Every arm runs with one thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``, forest
``n_jobs=1``), so results are comparable on a shared machine; budgets are wall clock of a dedicated run.

    .venv/bin/python bench/interactive.py --quick     # CI smoke, < 10 min on 2 cores
    .venv/bin/python bench/interactive.py             # full mode (hours on CPU; see docs/PERFORMANCE.md)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, cast  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.interactive_lib import (  # noqa: E402
    PeakRSS,
    RFPeer,
    RFSettings,
    error_scribble,
    initial_scribbles,
    rf_features,
    score,
    scribbles_to_reach,
    uncertainty_scribble,
    write_section,
)
from model import LossConfig, Predictor, load_bundle  # noqa: E402
from model.data import DatasetSplit, Sample, load_dataset  # noqa: E402
from model.data.simulate import SimulationKind, sample_seed, simulate_dataset, simulate_scribbles  # noqa: E402
from model.live import LiveConfig, LiveHead, LiveSegmenter  # noqa: E402
from model.train import Callbacks, TrainConfig, train  # noqa: E402

OUT_ROOT = REPO / "runs" / "bench_interactive"
DOC = REPO / "docs" / "PERFORMANCE.md"
SECTION = "## Interactive quality"
LIVE_SECTION = "## Live mode"


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset enters the benchmark; ``exclude`` are classes left out of the means."""

    key: str
    spec: str
    gray: bool
    exclude: tuple[int, ...]
    config: str
    experiment_bundles: tuple[str, ...]
    warm_data: str


def dataset_specs(data_root: Path) -> dict[str, DatasetSpec]:
    return {
        "mscmr": DatasetSpec("mscmr", f"mscmr:{data_root / 'mscmr_scribble'}", True, (0,),
                             "configs/mscmr_sasformer.yaml",
                             ("runs/mscmr_sasformer_s*/best", "runs/mscmr_pce_s*/best"),
                             "MSCMR train, real human scribbles"),
        "camvid": DatasetSpec("camvid", f"camvid:{data_root / 'camvid'}", False, (),
                              "configs/camvid_scribbles_sasformer.yaml",
                              ("runs/camvid_scribbles_sasformer*/best", "runs/camvid_scribbles_pce*/best"),
                              "CamVid train, simulated scribbles (seed 0)"),
    }


@dataclass(frozen=True)
class Mode:
    """Sizes of one benchmark mode."""

    name: str
    labelsets: tuple[tuple[str, str], ...]
    per_image: int
    project_k: int
    project_m: int
    budgets: tuple[float, ...]
    scratch_budgets: tuple[float, ...]
    scratch_per_image: bool
    noc_datasets: tuple[str, ...]
    noc_images: int
    noc_rounds: int
    noc_round_s: float
    warm_pretrain_s: float
    warm_pretrain_images: int | None


MODES = {
    "quick": Mode("quick", (("mscmr", "scribbles"), ("camvid", "scribbles")), per_image=1, project_k=2,
                  project_m=2, budgets=(10.0, 30.0), scratch_budgets=(30.0,), scratch_per_image=False,
                  noc_datasets=("mscmr",), noc_images=1, noc_rounds=4, noc_round_s=4.0, warm_pretrain_s=30.0,
                  warm_pretrain_images=64),
    "full": Mode("full", (("mscmr", "scribbles"), ("camvid", "scribbles"), ("camvid", "points")), per_image=3,
                 project_k=5, project_m=10, budgets=(10.0, 30.0, 60.0, 120.0),
                 scratch_budgets=(10.0, 30.0, 60.0, 120.0), scratch_per_image=True, noc_datasets=("mscmr", "camvid"),
                 noc_images=2, noc_rounds=15, noc_round_s=10.0, warm_pretrain_s=1200.0,
                 warm_pretrain_images=None),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- data ------------------------------------------------------------------------------------------
def pick_images(data: DatasetSplit, n: int, exclude: tuple[int, ...], offset: int = 0) -> list[Sample]:
    """``n`` images spread evenly over the split, each showing every counted class (MSCMR: RV, Myo and LV:
    empty apical slices say nothing about segmentation quality). Deterministic; ``offset`` shifts the grid
    so disjoint picks do not collide."""
    keep = [c for c in range(data.classes.num_classes) if c not in exclude]
    usable = [s for s in data if s.dense is not None
              and (len(keep) > 4 or all((s.dense == c).any() for c in keep))]
    if len(usable) < n:
        raise SystemExit(f"only {len(usable)} usable images in {data.source}, need {n}")
    step = len(usable) / n
    return [usable[(int(i * step) + offset) % len(usable)] for i in range(n)]


def with_sparse(samples: list[Sample], kind: str, seed: int) -> list[Sample]:
    """The sessions' sparse labels, simulated from the dense masks with the project's simulator."""
    if kind not in ("scribbles", "points"):
        raise ValueError(f"kind must be scribbles or points, got {kind!r}")
    params: dict[str, Any] = {"k": 1} if kind == "points" else {}
    out = simulate_dataset(samples, cast(SimulationKind, kind), seed=seed, **params)
    assert isinstance(out, list)
    return out


# ---- SASFormer arms --------------------------------------------------------------------------------
def base_config(ds: DatasetSpec, kind: str, args: argparse.Namespace) -> TrainConfig:
    """The dataset's experiment config (augmentation, crop, model size) with fine-tuning settings."""
    raw = yaml.safe_load((REPO / ds.config).read_text())
    raw.pop("data", None)
    cfg = TrainConfig.from_dict(raw)
    return replace(cfg, loss=LossConfig.for_annotation(kind, stages=cfg.loss.stages,  # type: ignore[arg-type]
                                                       normalisation=cfg.loss.normalisation),
                   batch_size=args.batch_size, steps=100_000, val_every=10**9, ckpt_every=10**9, log_every=10**9,
                   device="cpu", seed=args.seed)


def finetune(cfg: TrainConfig, data: DatasetSplit, init: str | None, budget_s: float, out_dir: Path,
             lr: float, warmup: int) -> dict[str, Any]:
    """One fine-tune with ``model.train.train``: steps done, train seconds (its own clock), bundle path."""
    end: dict[str, Any] = {}

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("event") == "end":
            end.update(event)

    if out_dir.exists():
        shutil.rmtree(out_dir)
    run = replace(cfg, init_bundle=init, time_budget_s=budget_s, out_dir=str(out_dir), lr=lr, warmup_steps=warmup)
    res = train(run, data, None, Callbacks(on_progress=on_progress), progress_bar=False)
    return {"bundle": str(res.bundle), "steps": res.steps_done, "status": res.status,
            "train_s": float(end.get("elapsed_s", float("nan")))}


def predict_maps(bundle: str, images: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Class maps and entropy maps of a bundle on images (entropy feeds the uncertainty annotator)."""
    model, _ = load_bundle(bundle)
    pred = Predictor(model, device="cpu")
    maps, ents = [], []
    for img in images:
        p = pred.predict(img)
        maps.append(p.class_map)
        ents.append(p.entropy())
    return maps, ents


# ---- warm start ------------------------------------------------------------------------------------
def warm_bundle(ds: DatasetSpec, args: argparse.Namespace, mode: Mode) -> tuple[str | None, str]:
    """A model trained on the dataset's other split, and a line saying what it is.

    Order: the background experiment's MSCMR bundles (copied first, so a run still training cannot change
    the weights mid-benchmark), unless ``--warm-source self``; else a self-made pretraining on the train
    split, cached under runs/bench_interactive/warm/ (not committed) so a second run skips it.
    """
    warm_dir = OUT_ROOT / "warm"
    if args.warm_source in ("auto", "experiment"):
        found = [p for pat in ds.experiment_bundles for p in sorted(glob.glob(str(REPO / pat)))]  # pattern order
        found = [p for p in found if (Path(p) / "bundle.json").is_file()]
        if found:
            src = Path(found[0])
            dst = warm_dir / f"{ds.key}_from_{src.parent.name}"
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst)
            meta = json.loads((dst / "bundle.json").read_text())
            steps = meta.get("provenance", {}).get("steps")
            return str(dst), f"{src.parent.name}/best of the background experiment ({ds.warm_data}, {steps} steps)"
        if args.warm_source == "experiment":
            return None, f"no experiment bundle matches {ds.experiment_bundles}"
    budget = args.warm_pretrain_s if args.warm_pretrain_s is not None else mode.warm_pretrain_s
    if budget <= 0:
        return None, "warm rows skipped: no experiment bundle and --warm-pretrain-s 0"
    n_img = mode.warm_pretrain_images or "all"
    dst = warm_dir / f"{ds.key}_self_{int(budget)}s_{n_img}img_seed{args.seed}"
    done = dst / "last" / "bundle.json"
    if not done.is_file():
        log(f"warm start for {ds.key}: pretraining {budget:.0f} s on {ds.warm_data} -> {dst}")
        train_split = load_dataset(ds.spec, "train")
        if mode.warm_pretrain_images is not None:  # a short run sees few images; skip simulating the rest
            every = max(1, len(train_split) // mode.warm_pretrain_images)
            train_split = train_split.with_samples(list(train_split)[::every][: mode.warm_pretrain_images])
        if ds.key == "camvid":
            simulated = simulate_dataset(train_split, "scribbles", seed=0)
            assert isinstance(simulated, DatasetSplit)
            train_split = simulated
        kind = "scribbles"
        cfg = base_config(ds, kind, args)
        cfg = replace(cfg, batch_size=8, time_budget_s=budget, out_dir=str(dst), lr=6e-4, warmup_steps=20)
        train(cfg, train_split, None, progress_bar=False)
    steps = json.loads(done.read_text()).get("provenance", {}).get("steps")
    return str(dst / "last"), (f"self-made: {budget:.0f} s pretraining from scratch on {ds.warm_data} "
                               f"({n_img} images, {steps} steps of batch 8)")


# ---- live arms (issue 15): model.live's head on [filter bank + frozen encoder] ---------------------------
def live_arms(ds: DatasetSpec, classes: list[str], warm: str | None, args: argparse.Namespace
              ) -> list[tuple[str, Predictor | None, str | None, LiveConfig]]:
    """(row name, predictor, version key, config): random init, and the seed with and without ``Y = A P``."""
    arms: list[tuple[str, Predictor | None, str | None, LiveConfig]] = [
        # as the service does: a random version's encoder is not used (the filter bank and its forest carry it)
        ("Live (random init)", None, None, LiveConfig())]
    if warm is not None:
        seed_pred = Predictor(load_bundle(warm)[0], device="cpu")
        arms.append(("Live (seed)", seed_pred, "seed", LiveConfig()))
        arms.append((f"Live (seed) + Y=AP stage {args.live_refine_stage}", seed_pred, "seed",
                     LiveConfig(refine_stage=args.live_refine_stage, refine_weight=args.live_refine_weight)))
    return arms


def run_live(name: str, predictor: Predictor | None, version: str | None, config: LiveConfig, train_s: list[Sample],
             eval_s: list[Sample], ds: DatasetSpec, classes: list[str]) -> dict[str, Any]:
    """Live arm: save every labelled image (features), one refit, predict the evaluated images."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        seg = LiveSegmenter(len(classes), predictor, version, config)
        for s in train_s:
            seg.set_labels(s.name, s.image, s.sparse)  # type: ignore[arg-type]
        t1 = time.perf_counter()
        stats = seg.refit()
        t2 = time.perf_counter()
        preds = [seg.predict(s.name, s.image).class_map for s in eval_s]
        t3 = time.perf_counter()
    return {"method": name, "budget_s": None, "features_s": t1 - t0, "fit_s": stats.fit_s, "refit_s": t2 - t1,
            "predict_s": t3 - t2, "wall_s": t3 - t0, "samples": stats.samples, "peak_rss_mb": mem.peak_mb,
            "rss_growth_mb": mem.growth_mb, "rss_method": mem.method,
            **score(preds, [s.dense for s in eval_s], classes, ds.exclude)}  # type: ignore[misc]


def _resize(arr: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    from PIL import Image

    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(arr).resize((size, size), resample))


def live_latency(ds: DatasetSpec, val: DatasetSplit, warm: str | None,
                 args: argparse.Namespace) -> list[dict[str, Any]]:
    """Library-level save -> mask latency: a project of ``--live-project`` labelled 512x512 images.

    Each image is resized to ``--live-size``, scribbles simulated from its dense mask. After the project is
    saved and fitted once, every round is one *save* -- new scribbles (another simulator seed) on one of
    the project's images -- timed as ``set_labels`` + ``refit`` + ``predict`` of that image, all features
    of the project cached (the service's steady state). Also timed: the first save of an image (filter bank
    and encoder forward) and the predict of an image never seen (features computed on the spot).
    """
    size, n = args.live_size, args.live_project
    classes = val.classes.names
    picks = pick_images(val, n + 1, ds.exclude, offset=4)
    imgs = [_resize(s.image, size, False) for s in picks]
    dense = [_resize(s.dense, size, True) for s in picks]  # type: ignore[arg-type]
    sparse = [simulate_scribbles(d, seed=args.seed + i) for i, d in enumerate(dense)]
    arms: list[tuple[str, Predictor | None, str | None]] = [("Live (random init)", None, None)]
    if warm is not None:
        arms.append(("Live (seed)", Predictor(load_bundle(warm)[0], device="cpu"), "seed"))
    rows = []
    for name, pred, version in arms:
        seg = LiveSegmenter(len(classes), pred, version, LiveConfig())
        first = []
        for i in range(n):
            t0 = time.perf_counter()
            seg.set_labels(f"img{i}", imgs[i], sparse[i])
            first.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fresh = seg.refit()
        fresh_s = time.perf_counter() - t0
        parts: dict[str, list[float]] = {"save": [], "refit": [], "predict": [], "total": []}
        for r in range(args.live_rounds):
            i = r % n
            labels = simulate_scribbles(dense[i], seed=args.seed + 1000 + r)
            t0 = time.perf_counter()
            seg.set_labels(f"img{i}", imgs[i], labels)
            t1 = time.perf_counter()
            st = seg.refit()
            t2 = time.perf_counter()
            seg.predict(f"img{i}")
            t3 = time.perf_counter()
            for k, v in (("save", t1 - t0), ("refit", t2 - t1), ("predict", t3 - t2), ("total", t3 - t0)):
                parts[k].append(v)
        t0 = time.perf_counter()
        seg.predict(image=imgs[n])
        cold = time.perf_counter() - t0

        def pct(xs: list[float], q: float) -> float:
            return float(np.percentile(xs, q))

        rows.append({"dataset": ds.key, "arm": name, "size": size, "project": n, "rounds": args.live_rounds,
                     "samples": st.samples, "first_save_p50_s": pct(first, 50), "fresh_fit_s": fresh_s,
                     "fresh_fit_samples": fresh.samples, "cold_predict_s": cold,
                     **{f"{k}_p50_s": pct(v, 50) for k, v in parts.items()},
                     **{f"{k}_p95_s": pct(v, 95) for k, v in parts.items()}})
        log(f"latency {ds.key}/{name}: save->mask p50 {rows[-1]['total_p50_s']:.2f}s p95 "
            f"{rows[-1]['total_p95_s']:.2f}s (refit p50 {rows[-1]['refit_p50_s']:.2f}s, predict p50 "
            f"{rows[-1]['predict_p50_s']:.2f}s), first save {rows[-1]['first_save_p50_s']:.2f}s, "
            f"cold predict {cold:.2f}s")
    return rows


def classifier_probe(ds: DatasetSpec, kind: str, val: DatasetSplit, args: argparse.Namespace) -> list[dict[str, Any]]:
    """How the live head's classifier was chosen: candidates on the same filter-bank rows of a project session.

    Labels of the project session's K images (class-balanced sample of 20k, as ``LiveSegmenter`` draws it),
    scored on its M held-out images; predict time is scaled to a 512x512 image. Filter bank only (the random
    init case, where the classifier has to carry everything).
    """
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier

    from model.live import balanced_indices, filter_bank

    classes = val.classes.names
    labeled = with_sparse(pick_images(val, args.project_k or 5, ds.exclude, offset=1), kind, args.seed)
    held = [s for s in pick_images(val, (args.project_m or 5) + (args.project_k or 5) + 3, ds.exclude, offset=3)
            if s.name not in {x.name for x in labeled}][: args.project_m or 5]
    fb = {s.name: filter_bank(s.image) for s in labeled + held}
    x = np.concatenate([fb[s.name][s.sparse != 255] for s in labeled])
    y = np.concatenate([s.sparse[s.sparse != 255] for s in labeled]).astype(np.int64)  # type: ignore[index]
    idx = balanced_indices(y, 20_000, np.random.default_rng(args.seed), len(classes))
    cands: list[tuple[str, Any]] = [
        ("MLP 2x64 (LiveHead)", None),
        ("RF 100 trees, full depth", RandomForestClassifier(100, n_jobs=1, random_state=args.seed)),
        ("RF 50 trees, depth 12", RandomForestClassifier(50, max_depth=12, n_jobs=1, random_state=args.seed)),
        ("extra trees 100, depth 16", ExtraTreesClassifier(100, max_depth=16, n_jobs=1, random_state=args.seed)),
        ("hist. gradient boosting, 50 iter.", HistGradientBoostingClassifier(max_iter=50, random_state=args.seed)),
    ]
    rows = []
    for name, clf in cands:
        t0 = time.perf_counter()
        model: Any
        if clf is None:
            model = LiveHead(len(classes))
            model.fit(x[idx], None, y[idx])
        else:
            model = clf.fit(x[idx], y[idx])
        t1 = time.perf_counter()
        preds = [_probe_proba(model, fb[s.name], len(classes)).argmax(0).astype(np.uint8) for s in held]
        t2 = time.perf_counter()
        px = sum(s.image.shape[0] * s.image.shape[1] for s in held)
        rows.append({"dataset": ds.key, "classifier": name, "samples": int(len(idx)), "fit_s": t1 - t0,
                     "predict_512_s": (t2 - t1) / px * 512 * 512,
                     **score(preds, [s.dense for s in held], classes, ds.exclude)})  # type: ignore[misc]
        log(f"probe {ds.key}: {name}: Dice {rows[-1]['mean_dice']:.3f} fit {t1 - t0:.2f}s "
            f"predict/512^2 {rows[-1]['predict_512_s']:.2f}s")
    return rows


def _probe_proba(model: Any, f: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, H, W)`` probabilities of a probe candidate (a ``LiveHead`` or a scikit-learn classifier)."""
    if isinstance(model, LiveHead):
        return model.predict_proba(f)
    p = model.predict_proba(f.reshape(-1, f.shape[-1]))
    out = np.zeros((num_classes, f.shape[0] * f.shape[1]), np.float32)
    out[model.classes_] = p.T
    return out.reshape(num_classes, *f.shape[:2])


def probe_table(rows: list[dict[str, Any]]) -> str:
    head = ("| data | classifier (filter bank only) | samples | mIoU | mean Dice | fit s | predict s per 512x512 |\n"
            "|---|---|---:|---:|---:|---:|---:|\n")
    return head + "\n".join(f"| {r['dataset']} | {r['classifier']} | {r['samples']} | {r['miou']:.3f} | "
                             f"{r['mean_dice']:.3f} | {r['fit_s']:.2f} | {r['predict_512_s']:.2f} |" for r in rows)


def latency_table(rows: list[dict[str, Any]]) -> str:
    head = ("| data | arm | save -> mask p50 s | p95 s | of it: set_labels p50 | refit p50 / p95 | predict p50 / p95 "
            "| first save of an image s | fresh fit s | predict, uncached image s |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = [f"| {r['dataset']} | {r['arm']} | {r['total_p50_s']:.2f} | {r['total_p95_s']:.2f} | "
             f"{r['save_p50_s']:.2f} | {r['refit_p50_s']:.2f} / {r['refit_p95_s']:.2f} | "
             f"{r['predict_p50_s']:.2f} / {r['predict_p95_s']:.2f} | {r['first_save_p50_s']:.2f} | "
             f"{r['fresh_fit_s']:.2f} | {r['cold_predict_s']:.2f} |" for r in rows]
    return head + "\n".join(lines)


# ---- part 1: budget sessions ------------------------------------------------------------------------
def run_rf(name: str, settings: RFSettings, train_s: list[Sample], eval_s: list[Sample], ds: DatasetSpec,
           classes: list[str], same: bool) -> dict[str, Any]:
    """Forest arm: features of every image involved, fit on the labeled ones, predict the evaluated ones."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        feats = {s.name: rf_features(s.image, ds.gray, settings) for s in train_s + ([] if same else eval_s)}
        t1 = time.perf_counter()
        peer = RFPeer(settings).fit([feats[s.name] for s in train_s], [s.sparse for s in train_s])  # type: ignore[misc]
        t2 = time.perf_counter()
        preds = [peer.predict(feats[s.name]) for s in eval_s]
        t3 = time.perf_counter()
    return {"method": name, "budget_s": None, "features_s": t1 - t0, "fit_s": t2 - t1, "predict_s": t3 - t2,
            "wall_s": t3 - t0, "peak_rss_mb": mem.peak_mb, "rss_growth_mb": mem.growth_mb, "rss_method": mem.method,
            **score(preds, [s.dense for s in eval_s], classes, ds.exclude)}  # type: ignore[misc]


def run_sasformer(name: str, cfg: TrainConfig, data: DatasetSplit, init: str | None, budget: float,
                  eval_s: list[Sample], ds: DatasetSpec, out_dir: Path, lr: float, warmup: int) -> dict[str, Any]:
    """SASFormer arm: fine-tune for ``budget`` seconds (0 = the init model as is), then predict."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if budget > 0:
            ft = finetune(cfg, data, init, budget, out_dir, lr, warmup)
        else:
            assert init is not None
            ft = {"bundle": init, "steps": 0, "status": "none", "train_s": 0.0}
        t1 = time.perf_counter()
        maps, _ = predict_maps(ft["bundle"], [s.image for s in eval_s])
        t2 = time.perf_counter()
    return {"method": name, "budget_s": budget, "steps": ft["steps"], "train_s": ft["train_s"],
            "finetune_call_s": t1 - t0, "predict_s": t2 - t1, "wall_s": t2 - t0, "peak_rss_mb": mem.peak_mb,
            "rss_growth_mb": mem.growth_mb, "rss_method": mem.method,
            **score(maps, [s.dense for s in eval_s], data.classes.names, ds.exclude)}  # type: ignore[misc]


def budget_sessions(ds: DatasetSpec, kind: str, val: DatasetSplit, warm: str | None, mode: Mode,
                    args: argparse.Namespace) -> list[dict[str, Any]]:
    classes = val.classes.names
    cfg = base_config(ds, kind, args)
    rows: list[dict[str, Any]] = []
    single = pick_images(val, mode.per_image, ds.exclude)
    labeled = pick_images(val, mode.project_k, ds.exclude, offset=1)
    held = [s for s in pick_images(val, mode.project_m + mode.project_k + mode.per_image, ds.exclude, offset=3)
            if s.name not in {x.name for x in labeled}][: mode.project_m]
    sessions: list[tuple[str, list[list[Sample]], list[list[Sample]]]] = [
        ("per-image", [[s] for s in single], [[s] for s in single]),
        ("project", [labeled], [held]),
    ]
    rf_arms = [("RF (100 trees, ilastik size)", RFSettings(seed=args.seed)),
               ("RF (skimage example: 50 trees, depth 10)",
                RFSettings(n_estimators=50, max_depth=10, max_samples=0.05, seed=args.seed))]
    sas_arms: list[tuple[str, str | None, tuple[float, ...], float, int]] = [
        ("SASFormer scratch", None, mode.scratch_budgets, args.lr_scratch, 10)]
    if warm is not None:
        sas_arms.append(("SASFormer warm", warm, (0.0, *mode.budgets), args.lr_warm, 0))
    if "rf" not in args.arms:
        rf_arms = []
    if "sasformer" not in args.arms:  # live-only runs still show the seed model's own masks (no fine-tuning)
        sas_arms = [("SASFormer warm", warm, (0.0,), args.lr_warm, 0)] if warm is not None and "live" in args.arms \
            else []
    lives = live_arms(ds, classes, warm, args) if "live" in args.arms else []
    for session, train_groups, eval_groups in sessions:
        groups = [(with_sparse(t, kind, args.seed), e) for t, e in zip(train_groups, eval_groups, strict=True)]
        same = session == "per-image"

        def pooled(results: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
            """Per-image sessions run once per image; the row pools them (times: mean per image)."""
            out = dict(results[0])
            for key in ("wall_s", "features_s", "fit_s", "refit_s", "predict_s", "train_s", "finetune_call_s", "steps"):
                if key in out:
                    out[key] = float(np.mean([r[key] for r in results]))
            for key in ("peak_rss_mb", "rss_growth_mb"):
                out[key] = float(np.max([r[key] for r in results]))
            for key in ("miou", "mean_dice"):  # pooled confusion would be better; mean over images is what a user sees
                out[key] = float(np.nanmean([r[key] for r in results]))
            out.update(meta)
            return out

        label_frac = float(np.mean([(s.sparse != 255).mean() for g, _ in groups for s in g]))  # type: ignore[union-attr]
        meta = {"dataset": ds.key, "labels": kind, "session": session, "images_labeled": len(groups[0][0]),
                "images_scored": sum(len(e) for _, e in groups), "labeled_fraction": label_frac}
        for name, settings in rf_arms:
            res = [run_rf(name, settings, g, e, ds, classes, same) for g, e in groups]
            rows.append(pooled(res, meta))
            log(f"{ds.key}/{kind}/{session}: {name}: mIoU {rows[-1]['miou']:.3f} Dice {rows[-1]['mean_dice']:.3f} "
                f"wall {rows[-1]['wall_s']:.1f}s")
        for name, pred, version, lcfg in lives:
            res = [run_live(name, pred, version, lcfg, g, e, ds, classes) for g, e in groups]
            rows.append(pooled(res, meta))
            log(f"{ds.key}/{kind}/{session}: {name}: mIoU {rows[-1]['miou']:.3f} Dice {rows[-1]['mean_dice']:.3f} "
                f"wall {rows[-1]['wall_s']:.1f}s (refit {rows[-1]['refit_s']:.2f}s)")
        for name, init, budgets, lr, warmup in sas_arms:
            if init is None and same and not mode.scratch_per_image:
                log(f"{ds.key}/{kind}/{session}: {name} skipped in {mode.name} mode (time; see the project rows)")
                continue
            for budget in budgets:
                res = []
                for i, (g, e) in enumerate(groups):
                    data = val.with_samples(g)
                    out_dir = OUT_ROOT / mode.name / "ft" / f"{ds.key}_{kind}_{session}_{i}"
                    res.append(run_sasformer(name, cfg, data, init, budget, e, ds, out_dir, lr, warmup))
                rows.append(pooled(res, meta))
                log(f"{ds.key}/{kind}/{session}: {name} {budget:.0f}s: mIoU {rows[-1]['miou']:.3f} "
                    f"Dice {rows[-1]['mean_dice']:.3f} steps {rows[-1]['steps']:.0f} wall {rows[-1]['wall_s']:.1f}s")
    return rows


# ---- part 2: simulated annotator --------------------------------------------------------------------
def per_image_score(pred: np.ndarray, gt: np.ndarray, classes: list[str], exclude: tuple[int, ...]) -> dict[str, float]:
    return score([pred], [gt], classes, exclude)


def noc_loop(ds: DatasetSpec, sample: Sample, val: DatasetSplit, row: str, warm: str | None, mode: Mode,
             args: argparse.Namespace) -> dict[str, Any]:
    """One annotator session on one image; returns the quality-per-scribble curve."""
    assert sample.dense is not None
    gt = sample.dense
    classes = val.classes.names
    sparse, n_scribbles = initial_scribbles(gt, seed=args.seed)
    cfg = base_config(ds, "scribbles", args)
    feats = rf_features(sample.image, ds.gray, RFSettings(seed=args.seed)) if row == "RF" else None
    seg: LiveSegmenter | None = None
    if row.startswith("Live"):
        pred_model = None if "random" in row else Predictor(
            load_bundle(warm)[0], device="cpu") if warm is not None else None
        seg = LiveSegmenter(len(classes), pred_model, row, LiveConfig())
    curve: list[dict[str, Any]] = []
    bundle = warm
    t_start = time.perf_counter()
    with PeakRSS() as mem:
        for rnd in range(mode.noc_rounds + 1):
            t0 = time.perf_counter()
            entropy = None
            if row == "RF":
                assert feats is not None
                pred = RFPeer(RFSettings(seed=args.seed)).fit([feats], [sparse]).predict(feats)
            elif seg is not None:
                seg.set_labels(sample.name, sample.image, sparse)
                seg.refit()
                pred = seg.predict(sample.name).class_map
            else:
                data = val.with_samples([replace(sample, sparse=sparse)])
                out_dir = OUT_ROOT / mode.name / "noc" / f"{ds.key}_{sample.name}_{row.replace(' ', '_')}_{rnd % 2}"
                ft = finetune(cfg, data, bundle, mode.noc_round_s, out_dir, args.lr_warm, 0)
                bundle = ft["bundle"]
                maps, ents = predict_maps(bundle, [sample.image])
                pred, entropy = maps[0], ents[0]
            s = per_image_score(pred, gt, classes, ds.exclude)
            curve.append({"scribbles": n_scribbles, "round_s": time.perf_counter() - t0,
                          "elapsed_s": time.perf_counter() - t_start, **s})
            if rnd == mode.noc_rounds or (s["mean_dice"] >= max(args.targets) and not args.noc_full_curve):
                break
            seed = sample_seed(args.seed + rnd + 1, sample.name)[1] % 2**31
            if row.endswith("uncertainty"):
                assert entropy is not None
                added = uncertainty_scribble(entropy, gt, sparse, seed=seed)
            else:
                added = error_scribble(pred, gt, sparse, seed=seed)
            if added is None:
                break
            sparse, _ = added
            n_scribbles += 1
    return {"dataset": ds.key, "image": sample.name, "row": row, "curve": curve, "peak_rss_mb": mem.peak_mb,
            "noc": {str(t): scribbles_to_reach(curve, t) for t in args.targets}, "max_scribbles": n_scribbles}


# ---- part 3: report ---------------------------------------------------------------------------------
def fmt(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def budget_table(rows: list[dict[str, Any]]) -> str:
    head = ("| data / labels | session | method | budget s | steps | mIoU | mean Dice | wall s | of it: train / fit s "
            "| peak RSS MB | RSS growth MB |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        fit = r.get("train_s", r.get("fit_s"))
        lines.append(f"| {r['dataset']} / {r['labels']} | {r['session']} | {r['method']} | "
                     f"{fmt(r['budget_s'], 0) if r['budget_s'] is not None else '-'} | "
                     f"{fmt(r.get('steps'), 0) if r.get('steps') is not None else '-'} | {fmt(r['miou'])} | "
                     f"{fmt(r['mean_dice'])} | {fmt(r['wall_s'], 1)} | {fmt(fit, 1)} | {fmt(r['peak_rss_mb'], 0)} | "
                     f"{fmt(r['rss_growth_mb'], 0)} |")
    return head + "\n".join(lines)


def noc_table(noc: list[dict[str, Any]], targets: list[float], rounds: int) -> str:
    cols = " | ".join(f"scribbles to Dice {t:.2f}" for t in targets)
    head = (f"| data | image | row | {cols} | Dice per scribble count | time s |\n"
            f"|---|---|---|{'---:|' * len(targets)}---|---:|\n")
    lines = []
    for r in noc:
        reach = " | ".join(str(r["noc"][str(t)]) if r["noc"][str(t)] is not None else f"> {r['max_scribbles']}"
                           for t in targets)
        curve = ", ".join(f"{p['scribbles']}: {p['mean_dice']:.2f}" for p in r["curve"])
        lines.append(f"| {r['dataset']} | {r['image']} | {r['row']} | {reach} | {curve} | "
                     f"{r['curve'][-1]['elapsed_s']:.0f} |")
    return head + "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Quality (mIoU) vs wall time per (dataset/labels, session): one panel each, log time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    panels = sorted({(r["dataset"], r["labels"], r["session"]) for r in rows})
    ncols = 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes2d = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False)
    axes = [list(axes2d.ravel())]
    for ax in axes[0][len(panels):]:
        ax.set_visible(False)
    styles = {"SASFormer scratch": ("tab:gray", "o-"), "SASFormer warm": ("tab:blue", "s-")}
    for ax, (d, lab, sess) in zip(axes[0][: len(panels)], panels, strict=True):
        sub = [r for r in rows if (r["dataset"], r["labels"], r["session"]) == (d, lab, sess)]
        for method in dict.fromkeys(r["method"] for r in sub):
            pts = sorted((max(r["wall_s"], 0.1), r["miou"], r.get("budget_s")) for r in sub if r["method"] == method)
            if method.startswith("RF"):
                marker = "^" if "100" in method else "v"
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=60, color="tab:red",
                           label=method, zorder=3)
            else:
                color, style = styles.get(method, ("tab:green", "d-"))
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, label=method)
                for x, y, b in pts:
                    ax.annotate(f"{b:.0f}s", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("wall time, s (log)")
        ax.set_ylabel("mIoU vs dense masks")
        ax.set_title(f"{d} / {lab} / {sess}", fontsize=9)
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes[0][: len(panels)]:  # one legend for all panels: not every panel has every method
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(result: dict[str, Any], plot_path: Path) -> None:
    """Regenerate this mode's subsection of "## Interactive quality" in docs/PERFORMANCE.md."""
    mode = result["mode"]
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    start = text.find(SECTION + "\n")
    existing = ""
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        existing = text[start + len(SECTION): nxt if nxt >= 0 else len(text)]
    subs: dict[str, str] = {}
    for chunk in existing.split("\n### ")[1:]:
        name = chunk.split("\n", 1)[0].strip()
        subs[name] = "### " + chunk.strip()
    h = f"{mode.capitalize()} mode"
    cmd = result["command"]
    warm_lines = "\n".join(f"* warm start, {k}: {v}" for k, v in result["warm"].items())
    body = [
        f"### {h}",
        "",
        f"`{cmd}` -- measured {result['date']} on {result['machine']}, torch threads {result['threads']}, "
        f"total {result['total_s'] / 60:.1f} min. Images: {result['images']}.",
        "",
        warm_lines,
        "",
        budget_table(result["rows"]),
        "",
        f"![quality vs time]({plot_path.relative_to(DOC.parent).as_posix()})",
        "",
        f"Simulated annotator: start with one scribble per class, then one scribble per round on the largest wrong "
        f"region (uncertainty row: on the model's largest high-entropy region), SASFormer fine-tuned "
        f"{result['noc_round_s']:.0f} s per round from the last round's weights, at most {result['noc_rounds']} "
        f"rounds. Dice = per-image mean Dice (MSCMR: RV, Myo, LV).",
        "",
        noc_table(result["noc"], result["targets"], result["noc_rounds"]) if result["noc"] else "(no NoC rows)",
    ]
    subs[h] = "\n".join(body)
    intro = INTRO.strip()
    order = [k for k in ("Quick mode", "Full mode") if k in subs] + [k for k in subs if k not in
                                                                     ("Quick mode", "Full mode", "Findings")]
    if "Findings" in subs:
        order.append("Findings")
    write_section(DOC, SECTION, intro + "\n\n" + "\n\n".join(subs[k] for k in order))


INTRO = """
`bench/interactive.py` (issue 8) compares SASFormer fine-tuned from a few scribbles with an ilastik-style
pixel classifier -- scikit-image's `multiscale_basic_features` + scikit-learn's `RandomForestClassifier`
through `skimage.future.fit_segmenter` / `predict_segmenter`, the library's "trainable segmentation" --
on the same images and the same sparse labels. **All sparse labels here are simulated** from the dense
val masks with the project's simulator (`model.data.simulate_scribbles` / `simulate_points`, seed 0;
MSCMR's real human scribbles exist only for its train split and train the warm-start model).
Sessions: *per-image* (labels of one image, predict it; times are per image) and *project* (labels of
K images, predict other images of the split). SASFormer budgets are wall-clock seconds of
`TrainConfig.time_budget_s` on a dedicated one-thread run; *wall s* adds model building, saving and
prediction; *warm 0 s* is the warm-start model with no fine-tuning. Forest wall time = features + fit +
predict. Scores: mIoU / mean Dice of the prediction against the dense masks (MSCMR: mean over RV, Myo,
LV; CamVid: 11 classes, void ignored), mean over images for per-image sessions. Memory: peak RSS of the
benchmark process during the arm (kernel high-water mark reset per arm via `/proc/self/clear_refs`), and
its growth over the RSS before the arm (the loaded datasets and libraries are in the absolute number).
Everything runs with one thread (`OMP_NUM_THREADS=1`, `torch.set_num_threads(1)`, forest `n_jobs=1`).

```
.venv/bin/python bench/interactive.py --quick      # < 10 min: 2 label sets, budgets 10/30 s, NoC on MSCMR
.venv/bin/python bench/interactive.py              # full: + CamVid points, 3 images, K=5/M=10, 10/30/60/120 s,
                                                   #   NoC on both datasets (15 rounds of 10 s), 20-min
                                                   #   warm-start pretraining: ~2.5-3 h estimated on 2 cores
```
Options: `--budgets 10 30 60 120`, `--warm-source {auto,experiment,self}`, `--warm-pretrain-s`, `--lr-warm`,
`--no-docs`, `--from-json runs/bench_interactive/<mode>/results.json` (rewrite plot and tables only).
Warm start (`auto`): the background experiment's bundle (`runs/mscmr_sasformer_s*/best`, `runs/mscmr_pce_s*/best`,
`runs/camvid_scribbles_*/best`, copied first), else a short self-made pretraining cached in
`runs/bench_interactive/warm/` (quick: 30 s on 64 train images; full: 20 min on the whole train split).
"""


LIVE_INTRO = """
`model.live` (issue 15) gives a dense mask within seconds of each save: a per-project `LiveHead` (a 2x64
MLP) refitted on every labelled pixel of the project (class-balanced sample capped at 20k, at most 4k per class
and image) over the ilastik filter bank (73 features gray / 103 RGB: ilastik's sigmas 0.7-10 plus 16, 24, 32
for context) plus the active model's frozen MiT stage features (all four stages, PCA to 32 inside the head) and
its decoder logits, as a residual `a * logits + b + MLP(x)` whose `a` starts at the model's better-than-chance
accuracy on the scribbles (logits left out below 0.25: a random model's), with the attention propagation
`Y = A P` (paper Eq. 4) as an optional refinement. While the project's active version is untrained (a new
project's random version 1) its encoder is not used: the filter bank carries the mask, classified by
extremely randomised trees (32 trees, depth 14; the MLP over-fitted tiny, uneven scribbles there and lost to
the forest in project sessions), so a new project is never worse than the ilastik forest; the MLP with the
encoder takes over once a version is trained (a seed model, or a promoted fine-tune). Rows below are
library-level (`LiveSegmenter.set_labels` / `refit` / `predict`), one thread (`OMP_NUM_THREADS=1`), on the same
images and simulated labels as the forest rows: *Live (random init)* = a new project (no trained encoder:
the service passes none), *Live (seed)* = the seed model named below, *+ Y=AP* = the seed with the refinement
(stage 2, weight 0.5), *SASFormer warm 0 s* = the seed model's own masks. Wall s = featurising the labelled
images + refit + predicting the scored ones; fit s = the head's training alone. The browser-measured save ->
mask latency is in "Live mode: save -> mask in the browser" (`bench/live_latency.py`).
"""


def write_live_docs(result: dict[str, Any]) -> None:
    """Regenerate "## Live mode" in docs/PERFORMANCE.md, keeping a hand-written "### Findings" subsection."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    start = text.find(LIVE_SECTION + "\n")
    findings = ""
    if start >= 0:
        nxt = text.find("\n## ", start + len(LIVE_SECTION))
        existing = text[start + len(LIVE_SECTION): nxt if nxt >= 0 else len(text)]
        for chunk in existing.split("\n### ")[1:]:
            if chunk.split("\n", 1)[0].strip() == "Findings":
                findings = "### " + chunk.strip()
    rows = [r for r in result["rows"] if r["method"].startswith(("RF (100", "Live"))
            or (r["method"] == "SASFormer warm" and r["budget_s"] == 0)]
    warm_lines = "\n".join(f"* seed / warm start, {k}: {v}" for k, v in result["warm"].items())
    body = [LIVE_INTRO.strip(), "",
            f"`{result['command']}` -- measured {result['date']} on {result['machine']}, load avg "
            f"{result.get('load_start', float('nan')):.1f} at the start, torch threads {result['threads']}, total "
            f"{result['total_s'] / 60:.1f} min. Images: {result['images']}.", "", warm_lines, "",
            budget_table(rows) if rows else "(no budget rows)"]
    if result.get("noc"):
        body += ["", "Simulated annotator (as in Interactive quality; live rows refit after every scribble):", "",
                 noc_table(result["noc"], result["targets"], result["noc_rounds"])]
    if result.get("latency"):
        lat = result["latency"][0]
        body += ["", f"Library-level latency of one save in a project of {lat['project']} labelled "
                 f"{lat['size']}x{lat['size']} images (resized val images, simulated scribbles; features of the "
                 f"project cached), {lat['rounds']} saves: `set_labels` + `refit` (continuing the last head) + "
                 f"`predict` of the saved image:", "", latency_table(result["latency"])]
    if result.get("probe"):
        body += ["", "Choice of the head's classifier (`--live-probe`): candidates fitted on the same class-balanced "
                 "filter-bank rows of the project session's labelled images, scored on its held-out images:", "",
                 probe_table(result["probe"])]
    if findings:
        body += ["", findings]
    write_section(DOC, LIVE_SECTION, "\n".join(body))


# ---- main -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke mode (< 10 min on 2 cores)")
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--budgets", type=float, nargs="+", help="SASFormer fine-tune budgets, seconds (default: "
                    "quick 10 30, scratch 30 only; full 10 30 60 120)")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.80, 0.85], help="NoC target mean Dice")
    ap.add_argument("--noc-rounds", type=int)
    ap.add_argument("--noc-round-s", type=float)
    ap.add_argument("--noc-full-curve", action="store_true", help="keep adding scribbles after the last target")
    ap.add_argument("--warm-source", choices=("auto", "experiment", "self"), default="auto",
                    help="auto: the background experiment's MSCMR bundle if present, else a self-made pretraining")
    ap.add_argument("--warm-pretrain-s", type=float, help="self-made warm-start pretraining budget, seconds")
    ap.add_argument("--lr-warm", type=float, default=2e-5,
                    help="fine-tune LR from a warm start (head x10); 2e-5 kept MSCMR held-out Dice best of "
                         "2e-4 / 5e-5 / 2e-5 in a 30 s probe (docs/PERFORMANCE.md)")
    ap.add_argument("--lr-scratch", type=float, default=6e-4, help="LR from scratch (head x10)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-budget", action="store_true", help="only the annotator loop")
    ap.add_argument("--skip-noc", action="store_true", help="only the budget sessions")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/ (results JSON only)")
    ap.add_argument("--labelsets", nargs="+", metavar="DATA:KIND",
                    help="subset of the mode's label sets, e.g. mscmr:scribbles camvid:points")
    ap.add_argument("--per-image", type=int, help="images of the per-image session (quick 1, full 3)")
    ap.add_argument("--project-k", type=int, help="labelled images of the project session (quick 2, full 5)")
    ap.add_argument("--project-m", type=int, help="predicted images of the project session (quick 2, full 10)")
    ap.add_argument("--noc-datasets", nargs="+", choices=("mscmr", "camvid"), help="datasets of the annotator loop")
    ap.add_argument("--from-json", type=Path, help="no benchmark: rewrite the plot and docs from a results.json")
    ap.add_argument("--arms", nargs="+", choices=("rf", "sasformer", "live"), default=["rf", "sasformer", "live"],
                    help="which methods run (default all); e.g. --arms rf live for the live-mode tables alone")
    ap.add_argument("--warm-bundle", nargs="+", default=[], metavar="DATA=PATH",
                    help="use this bundle as the warm start / live seed of a dataset (skips the search)")
    ap.add_argument("--live-refine-stage", type=int, default=2, help="MiT stage of the Y = A P row (1-4)")
    ap.add_argument("--live-refine-weight", type=float, default=0.5, help="blend weight of Y = A P")
    ap.add_argument("--live-latency", nargs="*", choices=("mscmr", "camvid"),
                    help="datasets of the live latency part (default: quick camvid, full both; none = skip)")
    ap.add_argument("--live-probe", nargs="*", choices=("mscmr", "camvid"), default=[],
                    help="also compare candidate classifiers for the live head on these datasets' project session")
    ap.add_argument("--live-size", type=int, default=512, help="latency: image side after resizing")
    ap.add_argument("--live-project", type=int, default=20, help="latency: labelled images in the project")
    ap.add_argument("--live-rounds", type=int, default=20, help="latency: timed saves")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        plot_path = REPO / "docs" / f"interactive_quality_{result['mode']}.png"
        if "sasformer" in result.get("arms", ["sasformer"]):
            plot(result["rows"], plot_path, f"{result['mode']} mode, {result['date']}, 1 thread; SASFormer labels = "
                 "budget")
            write_docs(result, plot_path)
        if "live" in result.get("arms", []):
            write_live_docs(result)
        log(f"docs rewritten from {args.from_json}")
        return
    mode = MODES["quick" if args.quick else "full"]
    if args.budgets:
        mode = replace(mode, budgets=tuple(args.budgets), scratch_budgets=tuple(args.budgets))
    if args.labelsets:
        wanted = [tuple(x.split(":", 1)) for x in args.labelsets]
        bad = [w for w in wanted
               if len(w) != 2 or w[0] not in ("mscmr", "camvid") or w[1] not in ("scribbles", "points")]
        if bad:
            raise SystemExit(f"--labelsets: expected mscmr|camvid:scribbles|points, got {bad}")
        mode = replace(mode, labelsets=tuple(wanted))
    if args.per_image:
        mode = replace(mode, per_image=args.per_image)
    if args.project_k:
        mode = replace(mode, project_k=args.project_k)
    if args.project_m:
        mode = replace(mode, project_m=args.project_m)
    if args.noc_datasets:
        mode = replace(mode, noc_datasets=tuple(args.noc_datasets))
    if args.noc_rounds is not None:
        mode = replace(mode, noc_rounds=args.noc_rounds)
    if args.noc_round_s is not None:
        mode = replace(mode, noc_round_s=args.noc_round_s)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    t_all = time.perf_counter()
    specs = dataset_specs(args.data_root)
    out = OUT_ROOT / mode.name
    out.mkdir(parents=True, exist_ok=True)
    log(f"mode {mode.name}: torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")

    latency_sets = args.live_latency if args.live_latency is not None else (
        (["camvid"] if mode.name == "quick" else ["mscmr", "camvid"]) if "live" in args.arms else [])
    needed = sorted({d for d, _ in mode.labelsets} | set(mode.noc_datasets) | set(latency_sets)
                    | set(args.live_probe or []))
    given = dict(w.split("=", 1) for w in args.warm_bundle)
    vals = {k: load_dataset(specs[k].spec, "val") for k in needed}
    warm: dict[str, tuple[str | None, str]] = {}
    for k in needed:
        if k in given:
            meta = json.loads((Path(given[k]) / "bundle.json").read_text())
            warm[k] = (given[k], f"{given[k]} (given with --warm-bundle; {meta.get('provenance', {}).get('steps')} "
                                 f"steps)")
            continue
        warm[k] = warm_bundle(specs[k], args, mode)
        log(f"warm start {k}: {warm[k][1]}")
        if warm[k][0] is None:
            log(f"  -> the SASFormer warm rows of {k} are skipped: {warm[k][1]}")

    rows: list[dict[str, Any]] = []
    images: list[str] = []
    if not args.skip_budget:
        for dkey, kind in mode.labelsets:
            rows += budget_sessions(specs[dkey], kind, vals[dkey], warm[dkey][0], mode, args)
        images.append(f"per-image {mode.per_image} per label set, project K={mode.project_k} labeled / "
                      f"M={mode.project_m} predicted")
    noc: list[dict[str, Any]] = []
    if not args.skip_noc:
        for dkey in mode.noc_datasets:
            ds = specs[dkey]
            for sample in pick_images(vals[dkey], mode.noc_images, ds.exclude, offset=2):
                row_names = ["RF"] if "rf" in args.arms else []
                if "live" in args.arms:
                    row_names += ["Live (random init)"] + (["Live (seed)"] if warm[dkey][0] else [])
                if "sasformer" in args.arms and warm[dkey][0]:
                    row_names += ["SASFormer warm", "SASFormer warm, uncertainty"]
                for row in row_names:
                    r = noc_loop(ds, sample, vals[dkey], row, warm[dkey][0], mode, args)
                    noc.append(r)
                    log(f"NoC {dkey}/{sample.name}/{row}: {r['noc']} curve "
                        + ", ".join(f"{p['scribbles']}:{p['mean_dice']:.2f}" for p in r["curve"]))
        images.append(f"NoC {mode.noc_images} image(s) per dataset")

    latency: list[dict[str, Any]] = []
    for dkey in latency_sets:
        latency += live_latency(specs[dkey], vals[dkey], warm[dkey][0], args)
    probe: list[dict[str, Any]] = []
    for dkey in args.live_probe or []:
        probe += classifier_probe(specs[dkey], "scribbles", vals[dkey], args)

    cmd = ".venv/bin/python bench/interactive.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:]
                                                     else "")
    result = {"mode": mode.name, "command": cmd, "date": _dt.date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared; load avg "
                         f"{os.getloadavg()[0]:.1f} at the end)",
              "threads": torch.get_num_threads(), "total_s": time.perf_counter() - t_all,
              "images": "; ".join(images), "warm": {k: v[1] for k, v in warm.items()}, "rows": rows, "noc": noc,
              "targets": args.targets, "noc_rounds": mode.noc_rounds, "noc_round_s": mode.noc_round_s,
              "budgets": list(mode.budgets), "latency": latency, "probe": probe, "arms": list(args.arms),
              "load_start": load_start}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in ("results.json", f"results_{stamp}.json"):  # latest + one per run (a later run cannot erase it)
        (out / name).write_text(json.dumps(result, indent=1, default=float))
    log(f"results: {out / 'results.json'} ({result['total_s'] / 60:.1f} min)")
    print(budget_table(rows))
    print(noc_table(noc, args.targets, mode.noc_rounds))
    if latency:
        print(latency_table(latency))
    if probe:
        print(probe_table(probe))
    if not args.no_docs and "live" in args.arms:
        write_live_docs(result)
        log(f"docs: {DOC} ({LIVE_SECTION})")
    if not args.no_docs and rows and "sasformer" in args.arms:
        plot_path = REPO / "docs" / f"interactive_quality_{mode.name}.png"
        plot(rows, plot_path, f"{mode.name} mode, {result['date']}, 1 thread; SASFormer labels = budget")
        write_docs(result, plot_path)
        log(f"docs: {plot_path}, {DOC} ({SECTION})")


if __name__ == "__main__":
    main()
