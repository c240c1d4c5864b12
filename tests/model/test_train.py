import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import load_bundle
from model.config import TrainConfig
from model.train import Callbacks, StepBatchSampler, TrainingError, lr_factor, train

from .toy import toy_split


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = {"model": {"variant": "b0", "drop_path_rate": 0.1}, "steps": 6, "batch_size": 2, "crop_size": 64,
            "scale_range": [0.8, 1.2], "warmup_steps": 2, "lr": 1e-3, "log_every": 1, "val_every": 1000,
            "ckpt_every": 3, "out_dir": str(tmp_path / "run"), "device": "cpu"}
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_training_lowers_the_loss_and_saves_bundles(tmp_path: Path) -> None:
    events = []
    cfg = _cfg(tmp_path, steps=30, val_every=15)
    data = toy_split(8)
    result = train(cfg, data, data.with_samples(list(data)[:2]), Callbacks(on_progress=events.append),
                   progress_bar=False)
    assert result.status == "completed" and result.steps_done == 30
    losses = [e["loss"] for e in events if e["event"] == "train"]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    first = next(e for e in events if e["event"] == "train")
    assert {"step", "total", "pce", "aff", "lr", "images_per_s", "eta_s"} <= set(first)
    assert [e["step"] for e in events if e["event"] == "val"] == [15, 30]
    model, bundle = load_bundle(result.bundle)
    assert bundle.config.class_names == ["background", "disc", "square"]
    assert bundle.provenance["train_config"]["steps"] == 30 and bundle.provenance["metrics"]["miou"] is not None
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "end" and log[-1]["status"] == "completed"


def test_resume_continues_exactly(tmp_path: Path) -> None:
    data = toy_split(6)
    full = train(_cfg(tmp_path / "a"), data, progress_bar=False)
    assert full.steps_done == 6
    stop_at_3 = Callbacks(should_stop=lambda: stopped.append(1) or len(stopped) >= 3)
    stopped: list[int] = []
    part = train(_cfg(tmp_path / "b"), data, callbacks=stop_at_3, progress_bar=False)
    assert part.status == "stopped" and part.steps_done == 3
    resumed = train(_cfg(tmp_path / "b"), data, resume=True, progress_bar=False)
    assert resumed.steps_done == 6
    a = load_file(str(tmp_path / "a" / "run" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "last" / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_time_budget_and_bad_requests(tmp_path: Path) -> None:
    data = toy_split(4)
    r = train(_cfg(tmp_path, steps=1000, time_budget_s=0.5), data, progress_bar=False)
    assert r.status == "time_budget" and 0 < r.steps_done < 1000
    unlabeled = data.with_samples([type(s)(s.name, s.image, None, s.dense) for s in data])
    with pytest.raises(TrainingError, match="no labeled pixel"):
        train(_cfg(tmp_path), unlabeled, progress_bar=False)
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(_cfg(tmp_path / "fresh"), data, resume=True, progress_bar=False)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        _cfg(tmp_path, steps=0)
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"stpes": 3})


def test_fine_tune_from_a_bundle_checks_classes(tmp_path: Path) -> None:
    data = toy_split(4)
    base = train(_cfg(tmp_path / "base", steps=2), data, progress_bar=False)
    tuned = train(_cfg(tmp_path / "ft", steps=2, init_bundle=str(base.bundle)), data, progress_bar=False)
    assert load_bundle(tuned.bundle)[1].provenance["base"] == str(base.bundle)
    other = data.with_samples(list(data))
    other.classes.names[2] = "triangle"
    with pytest.raises(TrainingError, match="has classes"):
        train(_cfg(tmp_path / "bad", steps=2, init_bundle=str(base.bundle)), other, progress_bar=False)


def test_data_order_is_a_function_of_seed_and_step() -> None:
    full = list(StepBatchSampler(n=5, batch=3, start=0, total=6, seed=1))
    tail = list(StepBatchSampler(n=5, batch=3, start=4, total=6, seed=1))
    assert full[4:] == tail
    flat = [i for batch in full[:5] for _, i in batch]  # first 15 samples = 3 epochs of 5
    assert sorted(flat[:5]) == sorted(flat[5:10]) == list(range(5))
    ranks = [list(StepBatchSampler(5, 2, 0, 3, 1, rank=r, world=2)) for r in (0, 1)]
    assert ranks[0] != ranks[1]


def test_lr_schedule_warms_up_and_decays() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=10)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.5) and lr_factor(100, cfg) == 0.0


@pytest.mark.slow
def test_ddp_with_torchrun_on_cpu(tmp_path: Path) -> None:
    """Two processes with the gloo backend: the same loop, rank 0 writes the bundle."""
    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from toy import toy_split\n"
        "from model.config import TrainConfig\n"
        "from model.train import train\n"
        f"cfg = TrainConfig.from_dict({{'model': {{'variant': 'b0'}}, 'steps': 3, 'batch_size': 2, 'crop_size': 64, "
        f"'warmup_steps': 1, 'device': 'cpu', 'out_dir': {str(tmp_path / 'ddp')!r}}})\n"
        "train(cfg, toy_split(4), progress_bar=False)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                    "29533", str(script)], check=True, env=env, timeout=300)
    assert (tmp_path / "ddp" / "last" / "bundle.json").is_file()


def test_interrupting_exception_still_saves_checkpoint_and_bundle(tmp_path: Path) -> None:
    class TimeLimit(Exception):
        pass

    calls = []

    def stop_hard() -> bool:
        calls.append(1)
        if len(calls) == 2:
            raise TimeLimit
        return False

    r = train(_cfg(tmp_path), toy_split(4), callbacks=Callbacks(should_stop=stop_hard, interrupt_on=(TimeLimit,)),
              progress_bar=False)
    assert r.status == "interrupted" and r.steps_done == 2
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "last" / "bundle.json").is_file()


def test_cross_validation_fold_trains_on_the_other_groups_and_validates_on_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data.folds + data.fold: the held-out group is the validation split and never a training sample."""
    import model.train as train_mod
    from model.data.folds import write_folds

    data = toy_split(6)  # groups g0 (toy00, 02, 04) and g1 (toy01, 03, 05)
    monkeypatch.setattr(train_mod, "load_dataset", lambda spec, split: data)
    write_folds(tmp_path / "folds.json", [["g0"], ["g1"]])
    cfg = _cfg(tmp_path, data={"train": "toy", "val": "toy", "folds": str(tmp_path / "folds.json"), "fold": 1})
    train_split, held = train_mod.load_data(cfg)
    assert [s.name for s in held] == ["toy01", "toy03", "toy05"]  # not the val spec: the held-out fold
    assert [s.name for s in train_split] == ["toy00", "toy02", "toy04"]
    write_folds(tmp_path / "folds.json", [["g0"], ["other"]])
    with pytest.raises(TrainingError, match="in no fold"):  # g1 in no fold: an error, not a silent leak
        train_mod.load_data(cfg)
    with pytest.raises(TrainingError, match="both data.folds"):
        train_mod.load_data(_cfg(tmp_path, data={"train": "toy", "fold": 0}))


def test_pseudo_labels_train_through_the_real_attention(tmp_path: Path) -> None:
    """The pseudo-label term runs on the model's StageQK attention and is logged; off by default."""
    events: list[dict] = []
    cfg = _cfg(tmp_path, steps=4, loss={"stages": [2], "pseudo_weight": 1.0, "pseudo_threshold": 0.0})
    r = train(cfg, toy_split(4), callbacks=Callbacks(on_progress=events.append), progress_bar=False)
    assert r.status == "completed"
    logged = [e for e in events if e["event"] == "train"]
    assert all(e["pseudo_frac"] > 0 and e["pseudo"] > 0 for e in logged)  # threshold 0: every unlabeled px
    plain: list[dict] = []
    train(_cfg(tmp_path / "plain", steps=1), toy_split(4), callbacks=Callbacks(on_progress=plain.append),
          progress_bar=False)
    assert "pseudo" not in next(e for e in plain if e["event"] == "train")


def test_cutmix_resumes_exactly(tmp_path: Path) -> None:
    """cutmix_prob > 0 mixes with a generator seeded by (seed, step): a cut and resumed run ends identical."""
    data = toy_split(6)
    full = train(_cfg(tmp_path / "a", cutmix_prob=1.0), data, progress_bar=False)
    stopped: list[int] = []
    train(_cfg(tmp_path / "b", cutmix_prob=1.0), data, progress_bar=False,
          callbacks=Callbacks(should_stop=lambda: stopped.append(1) or len(stopped) >= 3))
    resumed = train(_cfg(tmp_path / "b", cutmix_prob=1.0), data, resume=True, progress_bar=False)
    assert full.steps_done == resumed.steps_done == 6
    a = load_file(str(tmp_path / "a" / "run" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "last" / "model.safetensors"))
    plain = load_file(str(train(_cfg(tmp_path / "c"), data, progress_bar=False).bundle / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not all(torch.allclose(a[k], plain[k]) for k in a)  # mixing changed what was learned


def test_mean_teacher_is_the_weight_average_and_resumes_exactly(tmp_path: Path) -> None:
    """ema_teacher_decay: the pseudo-labels come from a weight average (Mean Teacher's ramped decay), which
    is checkpointed, so a cut and resumed run ends identical; without the pseudo term it is refused."""
    from model.teacher import ema_update, frozen_copy

    student = torch.nn.Linear(2, 1)
    teacher = frozen_copy(student)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        student.weight.fill_(1.0)
        teacher.weight.fill_(0.0)
    assert ema_update(teacher, student, 0.99, step=1) == 0.0  # step 1: the teacher takes the student's weights
    assert torch.allclose(teacher.weight, torch.ones(1, 2))
    with torch.no_grad():
        student.weight.fill_(3.0)
    assert ema_update(teacher, student, 0.5, step=100) == 0.5
    assert torch.allclose(teacher.weight, torch.full((1, 2), 2.0))

    kw = {"ema_teacher_decay": 0.9, "loss": {"stages": [2], "pseudo_weight": 1.0, "pseudo_threshold": 0.0}}
    data = toy_split(6)
    events: list[dict] = []
    train(_cfg(tmp_path / "a", **kw), data, callbacks=Callbacks(on_progress=events.append), progress_bar=False)
    logged = [e for e in events if e["event"] == "train"]
    assert logged[0]["teacher_decay"] == 0.0 and logged[-1]["teacher_decay"] == pytest.approx(1 - 1 / 6)
    stopped: list[int] = []
    train(_cfg(tmp_path / "b", **kw), data, progress_bar=False,
          callbacks=Callbacks(should_stop=lambda: stopped.append(1) or len(stopped) >= 3))
    resumed = train(_cfg(tmp_path / "b", **kw), data, resume=True, progress_bar=False)
    assert resumed.steps_done == 6
    a = load_file(str(tmp_path / "a" / "run" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "last" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(ValueError, match="pseudo_weight"):
        _cfg(tmp_path, ema_teacher_decay=0.9)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        _cfg(tmp_path, ema_teacher_decay=1.0, loss={"stages": [2], "pseudo_weight": 1.0})
