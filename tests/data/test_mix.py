"""CutMix of images and scribbles: boxes move image and labels together, reproducibly."""

import pytest
import torch

from model.data.mix import cutmix_batch


def _batch(b: int = 4, h: int = 16, w: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i is filled with the value i (image) and label i on its left half, 255 on its right."""
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, h, w).clone()
    y = torch.full((b, h, w), 255, dtype=torch.long)
    for i in range(b):
        y[i, :, : w // 2] = i
    return x, y


def test_every_sample_gets_one_box_from_another_sample_in_image_and_labels_alike() -> None:
    x, y = _batch()
    mx, my = cutmix_batch(x, y, prob=1.0, generator=torch.Generator().manual_seed(0))
    assert (x == _batch()[0]).all()  # inputs are not modified in place
    for i in range(4):
        changed = mx[i, 0] != i
        assert changed.any()
        partners = mx[i, 0][changed].unique()
        assert len(partners) == 1 and int(partners) != i  # one partner, never itself
        j = int(partners)
        rows, cols = changed.nonzero(as_tuple=True)
        box = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
        assert changed[box].all()  # a solid box
        assert 0.2 * 256 - 16 <= int(changed.sum()) <= 0.5 * 256 + 16  # area fraction 0.2-0.5 (rounded side)
        assert (my[i][box] == y[j][box]).all()  # labels of the box come from the same partner, 255 included
        assert (my[i][~changed] == y[i][~changed]).all()


def test_probability_zero_is_identity_and_the_generator_fixes_the_result() -> None:
    x, y = _batch()
    same_x, same_y = cutmix_batch(x, y, prob=0.0, generator=torch.Generator().manual_seed(0))
    assert same_x is x and same_y is y
    a = cutmix_batch(x, y, 0.5, torch.Generator().manual_seed(7))
    b = cutmix_batch(x, y, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    mixed = sum(int((a[0][i] != i).any()) for i in range(4))
    many = [cutmix_batch(x, y, 0.5, torch.Generator().manual_seed(s))[0] for s in range(40)]
    rate = sum(int((m[i] != i).any()) for m in many for i in range(4)) / 160
    assert 0 <= mixed <= 4 and 0.35 < rate < 0.65
    one_x, one_y = _batch(b=1)
    assert cutmix_batch(one_x, one_y, 1.0, torch.Generator())[0] is one_x
    with pytest.raises(ValueError, match="labels"):
        cutmix_batch(x, y[:, :8], 1.0, torch.Generator())
