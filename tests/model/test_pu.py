"""ShapePU's negative-label term (model.pu): EM class shares, negatives beyond each share, training use."""

from pathlib import Path

import pytest
import torch

from model.config import LossConfig
from model.losses import sasformer_loss, unlabeled_cells
from model.pu import em_class_shares, negative_label_loss
from model.train import Callbacks, train

from .test_train import _cfg
from .toy import toy_split


def test_em_recovers_a_shifted_class_prior() -> None:
    """Posteriors of a calibrated classifier learnt under 50/50, applied where one class is 10%: EM finds 10%."""
    gen = torch.Generator().manual_seed(0)
    n, true_fg = 20000, 0.1
    y = torch.rand(n, generator=gen) < true_fg
    x = torch.randn(n, generator=gen) + 2.0 * y  # class-conditional N(0,1) and N(2,1)
    # Bayes posterior under the training prior 0.5/0.5: sigmoid of the log-likelihood ratio 2x - 2
    p_fg = torch.sigmoid(2 * x - 2)
    probs = torch.stack([1 - p_fg, p_fg], 1)
    assert float(p_fg.mean()) > 0.2  # the raw mean over-counts the foreground
    shares = em_class_shares(probs, torch.tensor([0.5, 0.5]))
    assert float(shares[1]) == pytest.approx(true_fg, abs=0.015)
    assert float(shares.sum()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="probs must be"):
        em_class_shares(probs, torch.tensor([1.0]))


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """An 8x8 logit grid over a 32x32 image: the top row of cells is labeled background, the bottom row
    class 1 (equal pixel counts, so the labeled prior is 1/2, 1/2); class 1's logit rises cell by cell."""
    target = torch.full((1, 32, 32), 255)
    target[0, 0:4, :] = 0
    target[0, 28:32, :] = 1
    logits = torch.zeros(1, 3, 8, 8)
    logits[0, 1] = torch.linspace(-3.0, 2.5, 64).view(8, 8)  # distinct values: no ties at the threshold
    logits[0, 2] = -4.0
    return logits, target


def test_negatives_go_to_the_least_likely_unlabeled_cells_beyond_the_em_share() -> None:
    logits, target = _scene()
    logits.requires_grad_(True)
    unl = unlabeled_cells(target, (8, 8))
    assert int(unl.sum()) == 48  # rows 1-6
    loss, stats = negative_label_loss(logits, target, unl, skip=(0,))
    # expected: the EM share of class 1 among the unlabeled cells (classes 0 and 1 have labels; 2 has none)
    probs = torch.softmax(logits.detach()[0, :2].permute(1, 2, 0).reshape(-1, 2)[unl[0]], 1)
    share = float(em_class_shares(probs, torch.tensor([0.5, 0.5]))[1])
    assert 0.05 < share < 0.95 and stats["pu_fg"] == pytest.approx(share, abs=1e-4)
    n_neg = max(int(48 * (1 - share)), 1) - 1  # strictly below the k-th smallest
    assert stats["pu_frac"] == pytest.approx(n_neg / 48)
    loss.backward()
    g = logits.grad[0].permute(1, 2, 0).reshape(-1, 3)
    hit = g.abs().sum(1) > 0
    assert int(hit.sum()) == n_neg
    assert not bool(hit[:8].any()) and not bool(hit[56:].any())  # labeled rows: no negative label
    p1 = logits.detach()[0, 1].reshape(-1)
    assert float(p1[hit].max()) < float(p1[unl[0] & ~hit].min())  # the least likely cells, exactly
    assert bool((g[hit, 1] > 0).all()) and bool((g[hit, 0] < 0).all())  # descent: less class 1, more bg
    assert float(loss.detach()) > 0
    none_left = negative_label_loss(logits.detach(), target, unl, skip=(0, 1))
    assert float(none_left[0]) == 0.0 and none_left[1]["pu_frac"] == 0.0  # class 2 has no label: never


def test_no_label_or_no_unlabeled_cell_gives_an_attached_zero() -> None:
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    empty = torch.full((1, 16, 16), 255)
    loss, _ = negative_label_loss(logits, empty, unlabeled_cells(empty, (4, 4)))
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    full = torch.zeros((1, 16, 16), dtype=torch.long)
    loss, stats = negative_label_loss(logits, full, unlabeled_cells(full, (4, 4)))
    assert float(loss.detach()) == 0.0 and stats["pu_frac"] == 0.0


def test_an_unknown_shares_source_is_refused() -> None:
    target = torch.zeros((1, 16, 16), dtype=torch.long)
    with pytest.raises(ValueError, match="shares_from"):
        negative_label_loss(torch.zeros(1, 2, 4, 4), target, unlabeled_cells(target, (4, 4)), shares_from="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pu_shares"):
        LossConfig(pu_shares="both")  # type: ignore[arg-type]


def test_loss_config_switches_it_on_at_its_start_step() -> None:
    logits, target = _scene()
    off = sasformer_loss(logits, None, target, LossConfig(alpha=0.0))
    assert "pu" not in off.scalars()
    cfg = LossConfig(alpha=0.0, pu_weight=1.0, pu_start_step=10)
    before, after = (sasformer_loss(logits, None, target, cfg, step=s) for s in (9, 10))
    assert before.scalars()["pu_weight"] == 0.0 and float(before.loss) == pytest.approx(float(off.loss))
    assert after.scalars()["pu_weight"] == 1.0
    assert float(after.loss) == pytest.approx(float(off.loss) + after.scalars()["pu"])
    assert LossConfig(**cfg.to_dict()) == cfg and cfg.to_dict()["pu_skip"] == [0]
    with pytest.raises(ValueError, match="pu_weight"):
        LossConfig(pu_weight=-1.0)


def test_pu_term_trains_a_pce_model_and_is_logged(tmp_path: Path) -> None:
    events: list[dict] = []
    cfg = _cfg(tmp_path, steps=4, loss={"alpha": 0.0, "pu_weight": 1.0, "pu_start_step": 2})
    r = train(cfg, toy_split(4), callbacks=Callbacks(on_progress=events.append), progress_bar=False)
    assert r.status == "completed"
    logged = [e for e in events if e["event"] == "train"]
    assert [e["pu_weight"] for e in logged] == [0.0, 0.0, 1.0, 1.0]
    assert all(0 <= e["pu_frac"] <= 1 and e["pu"] >= 0 for e in logged)


def test_labeled_shares_read_the_labeled_cells_not_the_unlabeled_ones() -> None:
    """With ``shares_from="labeled"`` the EM reads the labeled cells, so the shares follow what pCE fits there
    (here: half class 1) whatever the unlabeled cells predict; the negatives still go to unlabeled cells only."""
    logits, target = _scene()
    logits[0, 1, 0, :] = -6.0  # labeled background row: sure background
    logits[0, 1, 7, :] = 6.0   # labeled class-1 row: sure class 1
    logits[0, 1, 1:7, :] = -5.0  # every unlabeled cell says background: the paper's EM finds ~no class 1
    logits[0, 1, 1:7, :] += torch.linspace(0.0, 1.0, 48).view(6, 8)
    unl = unlabeled_cells(target, (8, 8))
    _, paper = negative_label_loss(logits, target, unl, skip=(0,))
    loss, public = negative_label_loss(logits, target, unl, skip=(0,), shares_from="labeled")
    assert paper["pu_fg"] < 0.02
    assert public["pu_fg"] == pytest.approx(0.5, abs=0.02)
    assert public["pu_frac"] == pytest.approx((int(48 * (1 - public["pu_fg"])) - 1) / 48, abs=1 / 48)
    cfg = LossConfig(alpha=0.0, pu_weight=1.0, pu_shares="labeled")
    out = sasformer_loss(logits, None, target, cfg, step=0)
    assert out.pu_stats is not None and out.pu_stats["pu_fg"] == pytest.approx(public["pu_fg"])
    with pytest.raises(ValueError, match="pu_shares"):
        LossConfig(pu_shares="all")  # type: ignore[arg-type]
