"""``sasformer``: the command line, a thin wrapper over the library (no model logic lives here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(
    name="sasformer",
    help="SASFormer: dense segmentation from sparse scribbles and clicks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error (no traceback) and exit: bad input is the user's to fix, not a crash."""
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def parse_floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{what} must be comma-separated numbers, got {text!r}")
        raise


@app.command()
def info() -> None:
    """List the MiT variants with their hyper-parameters and encoder parameter counts."""
    from .config import MIT_VARIANTS, SEGFORMER_DECODER_DIM, ModelConfig
    from .sasformer import build_sasformer, encoder_param_count

    table = Table("variant", "embed dims", "depths", "decoder dim", "encoder params")
    for name, v in MIT_VARIANTS.items():
        n = encoder_param_count(build_sasformer(ModelConfig(variant=name)))
        table.add_row(name, str(v["embed_dims"]), str(v["depths"]), str(SEGFORMER_DECODER_DIM[name]),
                      f"{n / 1e6:.2f}M")
    Console().print(table)


@app.command()
def init(
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle directory to create.")],
    classes: Annotated[str, typer.Option(help="Comma-separated class names, e.g. 'background,RV,Myo,LV'.")],
    variant: Annotated[str, typer.Option(help="MiT variant b0..b5.")] = "b0",
    colors: Annotated[str | None, typer.Option(help="Class colours as '#rrggbb,...' (default palette).")] = None,
    pretrained: Annotated[Path | None, typer.Option(help="Local MiT/SegFormer checkpoint (NVlabs, mmseg or HF).")]
    = None,
    strides: Annotated[str, typer.Option(help="'sasformer' (4,2,2,1) or 'segformer' (4,2,2,2).")] = "sasformer",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle.")] = False,
) -> None:
    """Create a model bundle (optionally from pretrained ImageNet/SegFormer weights) to train or serve."""
    from .bundle import BundleError, save_bundle
    from .config import STRIDES_SASFORMER, STRIDES_SEGFORMER, ModelConfig
    from .pretrained import PretrainedError, load_pretrained
    from .sasformer import build_sasformer

    names = [c.strip() for c in classes.split(",") if c.strip()]
    col = None
    if colors:
        try:
            hexes = [c.strip().lstrip("#") for c in colors.split(",")]
            col = [(int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for h in hexes]
        except ValueError:
            fail(f"colours must be '#rrggbb,...', got {colors!r}")
    if strides not in ("sasformer", "segformer"):
        fail(f"--strides must be 'sasformer' or 'segformer', got {strides!r}")
    try:
        cfg = ModelConfig(
            variant=variant, num_classes=len(names), class_names=names, class_colors=col or [],
            strides=STRIDES_SASFORMER if strides == "sasformer" else STRIDES_SEGFORMER,
        )
        model = build_sasformer(cfg)
        provenance: dict = {"init": "scratch"}
        if pretrained is not None:
            report = load_pretrained(model, pretrained)
            provenance = {"init": "pretrained", "pretrained": str(pretrained), "layout": report.layout,
                          "loaded_tensors": len(report.loaded), "skipped": report.skipped[:20]}
            console.print(f"loaded {len(report.loaded)} tensors ({report.layout} layout) from {pretrained}")
        save_bundle(model, output, provenance, overwrite=overwrite)
    except (ValueError, PretrainedError, BundleError) as e:
        fail(str(e))
    console.print(f"wrote {output}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, TIFF; gray or RGB; 8/16-bit).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model bundle directory.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output directory.")],
    flip: Annotated[bool, typer.Option(help="Flip test-time augmentation.")] = False,
    scales: Annotated[str, typer.Option(help="Multi-scale TTA, e.g. '0.75,1,1.25'.")] = "1",
    save_overlay: Annotated[bool, typer.Option("--overlay", help="Also write a colour overlay JPEG.")] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: CUDA if present).")] = None,
) -> None:
    """Segment images: writes <name>.png (paletted class map) and <name>.json (class areas)."""
    from PIL import Image
    from tqdm import tqdm

    from .bundle import BundleError, load_bundle
    from .imageio import ImageReadError, overlay, read_image, save_palette_png
    from .predictor import Predictor, default_device
    from .preprocess import to_rgb_array

    scale_list = parse_floats(scales, "--scales")
    if not scale_list or any(s <= 0 for s in scale_list):
        fail(f"--scales must be positive numbers, got {scales!r}")
    try:
        net, bundle = load_bundle(model, device=device or default_device())
    except BundleError as e:
        fail(str(e))
    predictor = Predictor(net, device=device)
    names = bundle.config.class_names
    output.mkdir(parents=True, exist_ok=True)
    for path in tqdm(images, desc="predict", unit="img"):
        try:
            img = read_image(path)
        except ImageReadError as e:
            fail(str(e))
        pred = predictor.predict(img, flip=flip, scales=scale_list)
        save_palette_png(pred.class_map, bundle.config.class_colors, output / f"{path.stem}.png")
        areas = pred.class_areas()
        (output / f"{path.stem}.json").write_text(
            json.dumps({"image": str(path), "classes": names,
                        "area_px": {n: int(a) for n, a in zip(names, areas, strict=True)}}, indent=2))
        if save_overlay:
            Image.fromarray(overlay(to_rgb_array(img), pred.class_map, bundle.config.class_colors)).save(
                output / f"{path.stem}_overlay.jpg", quality=90)
    console.print(f"wrote {len(images)} prediction(s) to {output}")


@app.command()
def attention(
    image: Annotated[Path, typer.Argument(help="Image file.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model bundle directory.")],
    x: Annotated[int, typer.Option(help="Query pixel column.")],
    y: Annotated[int, typer.Option(help="Query pixel row.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output directory.")],
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: CUDA if present).")] = None,
) -> None:
    """Write the patch-attention heatmaps of one query pixel for stages 1-4 and their mean (paper Fig. 3)."""
    from PIL import Image

    from .bundle import BundleError, load_bundle
    from .imageio import ImageReadError, heatmap_overlay, read_image
    from .predictor import Predictor, default_device
    from .preprocess import to_rgb_array

    try:
        net, _ = load_bundle(model, device=device or default_device())
        img = read_image(image)
        maps = Predictor(net, device=device).attention_maps(img, (x, y))
    except (BundleError, ImageReadError, ValueError) as e:
        fail(str(e))
    output.mkdir(parents=True, exist_ok=True)
    rgb = to_rgb_array(img)
    for key, heat in maps.items():
        Image.fromarray(heatmap_overlay(rgb, heat, 0.5)).save(output / f"{image.stem}_attn_{key}.png")
    console.print(f"wrote {len(maps)} heatmaps to {output}")


def load_train_config(config: Path | None, overrides: list[str]) -> dict:
    """YAML file + ``key.sub=value`` overrides (values parsed as YAML: numbers, lists, null)."""
    import yaml

    data: dict = {}
    if config is not None:
        if not config.is_file():
            fail(f"config file not found: {config}")
        try:
            data = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as e:
            fail(f"{config}: invalid YAML ({e})")
        if not isinstance(data, dict):
            fail(f"{config}: expected a mapping at the top level")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--set expects key=value, got {item!r}")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                fail(f"--set {key}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return data


@app.command()
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML training config (configs/*.yaml).")]
    = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override: --set loss.alpha=0 --set seed=1.")]
    = None,
    out_dir: Annotated[str | None, typer.Option(help="Run directory (default: the config's out_dir).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue exactly from <out_dir>/checkpoint.pt.")] = False,
) -> None:
    """Train a SASFormer; writes checkpoint.pt, metrics.jsonl and best/ + last/ bundles to the run directory."""
    from .config import TrainConfig
    from .data import DatasetError
    from .train import TrainingError
    from .train import train as run_training

    data = load_train_config(config, overrides or [])
    if out_dir is not None:
        data["out_dir"] = out_dir
    try:
        cfg = TrainConfig.from_dict(data)
        result = run_training(cfg, resume=resume)
    except (TrainingError, DatasetError, ValueError, TypeError) as e:
        fail(str(e))
    best = f", best {cfg.val_metric} {result.best_metric:.4f} at step {result.best_step}" \
        if result.best_metric is not None else ""
    console.print(f"{result.status} after {result.steps_done} steps{best}; bundle: {result.bundle}")
    if result.status == "interrupted":
        raise typer.Exit(130)


@app.command()
def pretrain(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (configs/*_simmim.yaml).")]
    = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override: --set data.fold=0 --set seed=1.")]
    = None,
    out_dir: Annotated[str | None, typer.Option(help="Run directory (default: the config's out_dir).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue exactly from <out_dir>/checkpoint.pt.")] = False,
) -> None:
    """Self-supervised SimMIM pretraining of the encoder on the training images (no labels used); writes
    <out_dir>/encoder.safetensors, which `sasformer train --set pretrained=<file>` and seed models load."""
    from .data import DatasetError
    from .simmim import PretrainConfig
    from .simmim import pretrain as run_pretrain
    from .train import TrainingError

    data = load_train_config(config, overrides or [])
    if out_dir is not None:
        data["out_dir"] = out_dir
    try:
        cfg = PretrainConfig.from_dict(data)
        result = run_pretrain(cfg, resume=resume)
    except (TrainingError, DatasetError, ValueError, TypeError) as e:
        fail(str(e))
    loss = f", masked-pixel L1 {result.loss:.4f}" if result.loss is not None else ""
    console.print(f"{result.status} after {result.steps_done} steps{loss}; encoder: {result.encoder_file}")
    if result.status == "interrupted":
        raise typer.Exit(130)


@app.command("eval")
def evaluate_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model bundle directory.")],
    data: Annotated[str, typer.Option(help="Dataset spec: mscmr:<root>, camvid:<root> or a dataset folder.")],
    split: Annotated[str | None, typer.Option(help="Split name (splits/<split>.txt); omit for all images.")] = "val",
    target: Annotated[str, typer.Option(help="Score against 'dense' masks or held-out 'sparse' labels.")] = "dense",
    flip: Annotated[bool, typer.Option(help="Flip test-time augmentation.")] = False,
    scales: Annotated[str, typer.Option(help="Multi-scale TTA, e.g. '0.75,1,1.25'.")] = "1",
    exclude_background: Annotated[bool, typer.Option(help="Leave class 0 out of the means (MSCMR).")] = False,
    lcc: Annotated[bool, typer.Option(help="Keep the largest connected component per class (not class 0): "
                                           "3-D over a subject's slices, 2-D per image without subjects.")]
    = False,
    folds: Annotated[Path | None, typer.Option(help="Folds file (configs/folds/*.json): score only --fold.")]
    = None,
    fold: Annotated[int | None, typer.Option(help="With --folds: the held-out fold of --split to score.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write report.json and coloured PNGs.")]
    = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: CUDA if present).")] = None,
) -> None:
    """Evaluate a bundle: confusion matrix, mIoU, per-class IoU/Dice, pixel accuracy, Dice per volume.

    With ``--folds F --fold K`` only fold K's subjects of the split are scored (the held-out fold of a
    cross-validation run; MSCMR's train subjects have scribbles only, so use ``--target sparse``).
    """
    from PIL import Image

    from .bundle import BundleError, load_bundle
    from .data import DatasetError, load_dataset
    from .data.folds import read_folds, split_fold
    from .evaluate import evaluate
    from .imageio import colorize
    from .predictor import Predictor, default_device

    scale_list = parse_floats(scales, "--scales")
    if target not in ("dense", "sparse"):
        fail(f"--target must be 'dense' or 'sparse', got {target!r}")
    if (folds is None) != (fold is None):
        fail("--folds and --fold go together")
    try:
        net, bundle = load_bundle(model, device=device or default_device())
        ds = load_dataset(data, split)
        if folds is not None and fold is not None:
            ds = split_fold(ds, read_folds(folds), fold)[1]
    except (BundleError, DatasetError, OSError, ValueError, KeyError) as e:
        fail(str(e))
    if ds.classes.names != bundle.config.class_names:
        fail(f"the model's classes {bundle.config.class_names} differ from the dataset's {ds.classes.names}")
    colors = bundle.config.class_colors
    if output is not None:
        (output / "predictions").mkdir(parents=True, exist_ok=True)

    def save(sample, class_map) -> None:  # noqa: ANN001
        if output is not None:
            Image.fromarray(colorize(class_map, colors)).save(output / "predictions" / f"{sample.name}.png")

    try:
        report = evaluate(Predictor(net, device=device), ds, ds.classes.names, target=target, flip=flip,
                          scales=scale_list, exclude_from_mean=(0,) if exclude_background else (),
                          on_prediction=save, lcc=lcc)
    except ValueError as e:
        fail(str(e))
    result = report.to_dict()
    table = Table("class", "IoU", "Dice", *(["volume Dice"] if report.volume_confusions else []))
    vol = report.volume_dice_per_class
    for i, name in enumerate(report.class_names):
        row = [name, f"{report.iou[i]:.4f}", f"{report.dice[i]:.4f}"]
        if report.volume_confusions:
            row.append(f"{vol[i]:.4f}")
        table.add_row(*row)
    Console().print(table)
    summary = f"mIoU {report.miou:.4f}  mean Dice {report.mean_dice:.4f}  pixel acc {report.pixel_accuracy:.4f}"
    if report.volume_confusions:
        summary += f"  mean volume Dice {report.mean_volume_dice:.4f}"
    Console().print(summary)
    if output is not None:
        (output / "report.json").write_text(json.dumps({"model": str(model), "data": data, "split": split,
                                                        "flip": flip, "scales": scale_list, "lcc": lcc,
                                                        "folds": str(folds) if folds else None, "fold": fold,
                                                        "target": target, **result}, indent=2))
        console.print(f"wrote {output / 'report.json'}")


@app.command("labels")
def labels_report(
    data: Annotated[str, typer.Option(help="Dataset spec: mscmr:<root>, camvid:<root> or a dataset folder.")],
    split: Annotated[str | None, typer.Option(help="Split name; omit for all images.")] = "train",
    simulate: Annotated[str | None, typer.Option(help="Simulate 'scribbles' or 'points' from the dense masks.")]
    = None,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 0,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the simulated labels as PNGs here.")]
    = None,
) -> None:
    """Report the sparse labels of a dataset (labeled-pixel fraction, pixels per class), optionally simulated."""
    from PIL import Image

    from .data import DatasetError, load_dataset, report, simulate_dataset

    try:
        ds = load_dataset(data, split)
    except DatasetError as e:
        fail(str(e))
    if simulate is not None:
        if simulate not in ("scribbles", "points"):
            fail(f"--simulate must be 'scribbles' or 'points', got {simulate!r}")
        try:
            ds = simulate_dataset(ds, simulate, seed=seed)  # type: ignore[assignment,arg-type]
        except ValueError as e:
            fail(str(e))
    stats = report(ds, class_names=ds.classes.names if hasattr(ds, "classes") else None)
    print(json.dumps({"data": data, "split": split, "simulated": simulate, "seed": seed, **stats}, indent=2))
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for sample in ds:
            if sample.sparse is not None:
                Image.fromarray(sample.sparse).save(output / f"{sample.name}.png")
        console.print(f"wrote labels to {output}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
