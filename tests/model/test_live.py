"""Unit tests of model.live on generated images: features, sampling, cache, head, refinement, facade."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import IGNORE_INDEX, Predictor, build_sasformer
from model.live import (
    ILASTIK_SIGMAS,
    EncoderFeatures,
    FeatureCache,
    HeadConfig,
    LiveConfig,
    LiveHead,
    LiveNotReady,
    LiveSegmenter,
    RowStore,
    attention_refine,
    balanced_indices,
    balanced_quota,
    filter_bank,
    filter_bank_names,
    filter_bank_width,
)
from model.live.segmenter import gather_rows
from tests.model.toy import toy_sample

FAST = HeadConfig(steps=80, refit_steps=40, batch_size=512, max_samples=3000, per_image_class_cap=800)
TOY = LiveConfig(head=FAST, sigmas=ILASTIK_SIGMAS)  # 64-px toy images: the context scales 16-32 see only padding


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(build_sasformer(variant="b0", num_classes=3), device="cpu")


# ---- filter bank -----------------------------------------------------------------------------------
def test_filter_bank_shapes_gray_rgb_and_gray_as_rgb() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (40, 56), dtype=np.uint8)
    rgb = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    fg, fr = filter_bank(gray), filter_bank(rgb)
    assert fg.shape == (40, 56, 73) == (40, 56, filter_bank_width(True)) and fg.dtype == np.float32
    assert fr.shape == (40, 56, 103) == (40, 56, filter_bank_width(False))
    assert filter_bank(gray, ILASTIK_SIGMAS).shape[-1] == 49 == filter_bank_width(True, ILASTIK_SIGMAS)
    assert len(filter_bank_names(True)) == 73 and len(filter_bank_names(False)) == 103
    # gray fed as three equal channels (MSCMR) is featurised once, identically
    np.testing.assert_array_equal(filter_bank(np.repeat(gray[..., None], 3, axis=2)), fg)
    assert np.isfinite(fr).all()


def test_filter_bank_values_on_a_constant_and_a_step() -> None:
    flat = filter_bank(np.full((32, 32), 128, np.uint8))
    names = filter_bank_names(True)
    np.testing.assert_allclose(flat[..., names.index("gauss_s3.5")], 128 / 255, atol=1e-5)
    for f in ("gradmag_s1", "log_s1", "dog_s5", "hess_ev1_s1.6", "st_ev1_s1"):
        np.testing.assert_allclose(flat[..., names.index(f)], 0.0, atol=5e-4)  # float32 kernel sums
    step = np.zeros((32, 32), np.uint8)
    step[:, 16:] = 255
    f = filter_bank(step)
    grad = f[..., names.index("gradmag_s1")]
    assert grad[:, 15:17].min() > 10 * grad[:, :8].max()  # edges light up at the step only


# ---- sampling ------------------------------------------------------------------------------------------
def test_balanced_quota_water_fills() -> None:
    q = balanced_quota(np.array([10_000, 50, 3000, 0]), 1000)
    assert q.tolist() == [475, 50, 475, 0]  # the small class keeps all, the rest share equally
    assert balanced_quota(np.array([5, 7]), 100).tolist() == [5, 7]  # under the cap: everything
    q = balanced_quota(np.array([400, 400, 401]), 1000)
    assert q.sum() == 1000 and q.max() - q.min() <= 1


def test_balanced_indices_are_class_balanced_and_capped() -> None:
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.zeros(50_000), np.ones(200), np.full(5_000, 2)]).astype(np.int64)
    idx = balanced_indices(labels, 3000, rng, 3)
    counts = np.bincount(labels[idx], minlength=3)
    assert counts.tolist() == [1400, 200, 1400] and len(np.unique(idx)) == len(idx)


# ---- cache ---------------------------------------------------------------------------------------------
def test_feature_cache_lru_eviction_by_bytes() -> None:
    cache = FeatureCache(max_bytes=3 * 4000)
    for i in range(3):
        cache.put((f"img{i}", ""), np.zeros(1000, np.float32))  # 4000 bytes each
    assert len(cache) == 3 and cache.nbytes == 12_000
    assert cache.get(("img0", "")) is not None  # img0 is now the most recently used
    cache.put(("img3", ""), np.zeros(1000, np.float32))
    assert ("img1", "") not in cache and ("img0", "") in cache and ("img3", "") in cache
    cache.put(("big", ""), np.zeros(10_000, np.float32))  # larger than the cap: not kept, nothing evicted
    assert ("big", "") not in cache and len(cache) == 3
    cache.put(("img0", "v2"), np.zeros(10, np.float32))  # 40 bytes over the cap: the LRU entry (img2) goes
    assert ("img2", "") not in cache and cache.nbytes == 8040
    cache.drop_version("v2")
    assert ("img0", "v2") not in cache
    cache.drop_image("img0")
    assert ("img0", "") not in cache and cache.nbytes == 4000
    calls = []
    assert cache.get_or_compute(("x", ""), lambda: calls.append(1) or np.ones(3)).sum() == 3
    cache.get_or_compute(("x", ""), lambda: calls.append(1) or np.ones(3))
    assert len(calls) == 1


# ---- encoder features ------------------------------------------------------------------------------
def test_encoder_features_sample_matches_dense_projection(predictor: Predictor) -> None:
    img = np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    enc = EncoderFeatures.of(predictor, img, attention_stages=(2, 4))
    assert enc.widths == (32, 64, 160, 256) and enc.image_hw == (50, 70)
    assert set(enc.attention) == {2, 4} and enc.attention[2].shape[:2] == enc.stages[1].shape[1:]
    ys, xs = np.array([0, 10, 49, 25]), np.array([0, 33, 69, 7])
    rows = enc.sample(ys, xs)
    assert rows.shape == (4, 512)
    w = [torch.eye(c)[:3] for c in enc.widths]  # first 3 channels of every stage, summed
    dense = enc.project_dense(w)
    expect = sum(rows[:, o: o + 3] for o in np.cumsum((0, 32, 64, 160)))
    np.testing.assert_allclose(dense[:, ys, xs].T.numpy(), expect, rtol=1e-4, atol=1e-5)
    # the predictor's normal path is untouched by the opt-in method
    assert predictor.predict(img).probs.shape == (3, 50, 70)


def _toy_images(n: int = 3) -> list:
    return [toy_sample(i, 64) for i in range(n)]


def test_live_head_learns_toy_task_and_folds_first_layer(predictor: Predictor) -> None:
    samples = _toy_images(3)
    head = LiveHead(3, FAST)
    fbs = [filter_bank(s.image, ILASTIK_SIGMAS) for s in samples]
    encs = [EncoderFeatures.of(predictor, s.image, with_logits=True) for s in samples]
    assert encs[0].widths == (32, 64, 160, 256, 3)  # the decoder's logits ride along as a fifth map
    ys, xs = np.nonzero(samples[0].sparse != IGNORE_INDEX)
    rows_fb = np.concatenate([fb[s.sparse != IGNORE_INDEX] for fb, s in zip(fbs, samples, strict=True)])
    rows_enc = np.concatenate([e.sample(*np.nonzero(s.sparse != IGNORE_INDEX)) for e, s in zip(encs, samples,
                                                                                                 strict=True)])
    labels = np.concatenate([s.sparse[s.sparse != IGNORE_INDEX] for s in samples])
    info = head.fit(rows_fb, rows_enc, labels, enc_widths=encs[0].widths, n_raw=1)
    assert info["fresh"] and info["features"] == 49 + FAST.encoder_pca + 3
    probs = head.predict_proba(fbs[0], encs[0], stages=(0, 1, 2, 3, 4))
    assert probs.shape == (3, 64, 64) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # the folded dense path equals the network applied to explicit rows [fb, PCA(stages), logits]
    assert head.net is not None and head.enc_basis is not None and head.enc_mean is not None
    assert head.mean is not None and head.std is not None
    e = torch.from_numpy(encs[0].sample(ys, xs))
    x = torch.cat([torch.from_numpy(fbs[0][ys, xs]), (e[:, :512] - head.enc_mean) @ head.enc_basis, e[:, 512:]], 1)
    # a random model is no better than chance on the scribbles: its logits are gated off (columns zeroed)
    assert head.logits_off and head.skip is None and head.trust < 0.25
    with torch.no_grad():
        xstd = (x - head.mean) / head.std
        xstd[:, -3:] = 0.0
        rows_p = head.net(xstd).softmax(-1).numpy()
    np.testing.assert_allclose(probs[:, ys, xs].T, rows_p, atol=1e-4)
    # it learned the task: held-out toy image scored against its dense mask
    other = toy_sample(7, 64)
    pred = head.predict_proba(filter_bank(other.image, ILASTIK_SIGMAS),
                              EncoderFeatures.of(predictor, other.image, with_logits=True), (0, 1, 2, 3, 4))
    assert (pred.argmax(0) == other.dense).mean() > 0.8  # random-init encoder columns: a little noise
    # a refit continues from the same network (same layout) with the shorter schedule
    info2 = head.fit(rows_fb, rows_enc, labels, enc_widths=encs[0].widths, n_raw=1)
    assert not info2["fresh"] and info2["steps"] == FAST.refit_steps
    with pytest.raises(ValueError, match="labels must be in"):
        head.fit(rows_fb, None, labels + 5)


def test_attention_refine_is_a_distribution_and_identity_at_weight_zero(predictor: Predictor) -> None:
    img = toy_sample(1, 64).image
    enc = EncoderFeatures.of(predictor, img, attention_stages=(2,))
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(64, 64)).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_allclose(attention_refine(probs, enc, 2, 0.0), probs, atol=1e-6)
    out = attention_refine(probs, enc, 2, 1.0)
    assert out.shape == probs.shape
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    assert out.std() < probs.std()  # attention averages: a smoother map than per-pixel noise
    with pytest.raises(ValueError, match="no attention of stage 3"):
        attention_refine(probs, enc, 3)


# ---- facade --------------------------------------------------------------------------------------------
def test_segmenter_save_refit_predict_remove() -> None:
    seg = LiveSegmenter(3, config=TOY)
    samples = _toy_images(3)
    with pytest.raises(LiveNotReady):
        seg.predict(image=samples[0].image)
    revs = [seg.set_labels(s.name, s.image, s.sparse) for s in samples]
    assert revs == sorted(revs) and seg.fitted_revision == -1
    stats = seg.refit()
    assert stats.images == 3 and stats.revision == revs[-1] == seg.fitted_revision and stats.samples > 0
    assert stats.class_counts[1] > 0 and stats.version_key is None
    cm, probs = seg.predict("toy00")
    assert cm.shape == (64, 64) and probs.shape == (3, 64, 64)
    other = toy_sample(9, 64)
    pred = seg.predict(image=other.image)
    assert (pred.class_map == other.dense).mean() > 0.85 and pred.revision == stats.revision
    with pytest.raises(KeyError):
        seg.predict("nope")
    with pytest.raises(ValueError, match="class ids >= 3"):
        seg.set_labels("bad", other.image, np.full((64, 64), 7, np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        seg.set_labels("bad", other.image, np.zeros((10, 10), np.uint8))
    assert seg.remove("toy00") and not seg.remove("toy00")
    seg.set_labels("toy01", samples[1].image, np.full((64, 64), IGNORE_INDEX, np.uint8))  # cleared labels
    assert seg.labelled_images == ["toy02"]
    assert seg.refit().images == 1
    seg.remove("toy02")
    with pytest.raises(LiveNotReady):
        seg.refit()
    with pytest.raises(LiveNotReady):
        seg.predict(image=other.image)


def test_segmenter_with_encoder_and_model_switch(predictor: Predictor) -> None:
    seg = LiveSegmenter(3, predictor, "v1", TOY)
    for s in _toy_images(2):
        seg.set_labels(s.name, s.image, s.sparse, "v1")
    st = seg.refit()
    assert st.version_key == "v1" and seg.state is not None and seg.state.stages == (0, 1, 2, 3, 4)  # 4: logits
    seg.set_model(predictor, "v2")  # a promotion (same weights here: only the version key matters to the cache)
    assert seg.predict("toy00").version_key == "v1"  # still the head fitted with v1's encoder
    st2 = seg.refit()
    assert st2.version_key == "v2" and st2.fresh  # another encoder: a fresh head, not a continuation
    assert seg.predict("toy00").version_key == "v2"
    assert ("toy00", "enc:v2:att():logits1") in seg.cache


def test_refit_races_saves_and_predictions() -> None:
    """A save may race a refit: predictions always come from a whole fitted head, nothing raises."""
    seg = LiveSegmenter(3, config=LiveConfig(head=HeadConfig(steps=30, refit_steps=15, batch_size=256,
                                                             max_samples=1500, per_image_class_cap=300)))
    samples = _toy_images(4)
    seg.set_labels(samples[0].name, samples[0].image, samples[0].sparse)
    seg.refit()
    errors: list[BaseException] = []
    seen: dict[int, list[int]] = {0: [], 1: []}
    stop = threading.Event()

    def saver() -> None:
        try:
            for k in range(12):
                s = samples[k % 4]
                seg.set_labels(s.name, s.image, s.sparse)
                seg.refit_in_background()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader(i: int) -> None:
        try:
            while not stop.is_set():
                p = seg.predict(image=samples[3].image)
                assert p.probs.shape == (3, 64, 64)
                assert np.allclose(p.probs.sum(0), 1.0, atol=1e-4)
                seen[i].append(p.revision)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in readers:
        t.start()
    save = threading.Thread(target=saver)
    save.start()
    save.join()
    final = seg.revision
    assert seg.wait_fitted(final, timeout=60)
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
    for revs in seen.values():  # each reader only ever sees newer heads published, never an older one again
        assert revs and revs == sorted(revs)
    assert seg.fitted_revision == final and seg.last_error is None
    assert sorted(seg.labelled_images) == [s.name for s in samples]


def test_out_of_order_saves_keep_the_newer_labels() -> None:
    seg = LiveSegmenter(3, config=TOY)
    s = toy_sample(0, 64)
    newer = np.full_like(s.sparse, IGNORE_INDEX)
    newer[10:12, 10:40] = 0
    rev_new = seg.set_labels(s.name, s.image, newer)
    seg._store(s.name, None, rev_new - 1)  # an older save (clearing it) finishing late must not win
    assert seg.labelled_images == [s.name]


def test_trust_in_the_models_logits_is_balanced_accuracy_above_chance() -> None:
    from model.live.head import _trust

    labels = torch.tensor([0] * 90 + [1] * 5 + [2] * 5)
    everything_background = torch.zeros(100, 3)
    everything_background[:, 0] = 5.0
    # 90% accurate, but only by the class prior
    assert _trust(everything_background, labels) == pytest.approx(0.0, abs=1e-6)
    perfect = F.one_hot(labels, 3).float() * 4.0
    assert _trust(perfect, labels) == pytest.approx(1.0)
    head = LiveHead(3, FAST)
    rng = np.random.default_rng(0)
    fb = rng.normal(size=(100, 5)).astype(np.float32)
    info = head.fit(fb, perfect.numpy(), labels.numpy(), enc_widths=(3,), n_raw=1)
    assert info["fresh"] and not head.logits_off and head.skip is not None
    assert float(head.skip[0].mean()) > 0.5  # started at trust 1 and stayed a strong weight


def test_stored_rows_replace_featurising_after_a_restart(tmp_path, predictor: Predictor) -> None:
    """A second segmenter on the same RowStore (the service after a restart) reads each image's rows instead
    of featurising it, and fits the same head; any change of pixels, labels or encoder version is a miss."""
    store = RowStore(tmp_path / "rows")
    samples = _toy_images(2)
    first = LiveSegmenter(3, config=TOY, rows=store)
    for s in samples:
        first.set_labels(s.name, s.image, s.sparse)
    assert first.rows_loaded == 0 and len(list((tmp_path / "rows").glob("*.npz"))) == 2
    first.refit()
    again = LiveSegmenter(3, config=TOY, rows=store)
    for s in samples:
        again.set_labels(s.name, s.image, s.sparse)
    assert again.rows_loaded == 2
    again.refit()
    other = toy_sample(9, 64).image
    np.testing.assert_allclose(again.predict(image=other).probs, first.predict(image=other).probs, atol=1e-6)

    changed = samples[0].sparse.copy()
    changed[changed == IGNORE_INDEX] = 0  # new labels: a miss, featurised and stored again
    third = LiveSegmenter(3, config=TOY, rows=store)
    third.set_labels(samples[0].name, samples[0].image, changed)
    assert third.rows_loaded == 0
    third.set_labels(samples[1].name, samples[1].image, np.full((64, 64), IGNORE_INDEX, np.uint8))  # cleared
    assert len(list((tmp_path / "rows").glob("*.npz"))) == 1

    next(iter((tmp_path / "rows").glob("*.npz"))).write_bytes(b"torn")  # a torn file is a miss, not an error
    fourth = LiveSegmenter(3, config=TOY, rows=store)
    fourth.set_labels(samples[0].name, samples[0].image, changed)
    assert fourth.rows_loaded == 0
    fifth = LiveSegmenter(3, config=TOY, rows=store)
    fifth.set_labels(samples[0].name, samples[0].image, changed)
    assert fifth.rows_loaded == 1  # ... and was rewritten
    assert fifth.remove(samples[0].name) and not list((tmp_path / "rows").glob("*.npz"))

    with_v1 = LiveSegmenter(3, predictor, "v1", TOY, rows=store)
    with_v1.set_labels(samples[0].name, samples[0].image, samples[0].sparse)
    with_v2 = LiveSegmenter(3, predictor, "v2", TOY, rows=store)
    with_v2.set_labels(samples[0].name, samples[0].image, samples[0].sparse)
    assert with_v1.rows_loaded == with_v2.rows_loaded == 0  # another encoder version: its rows differ
    back_v2 = LiveSegmenter(3, predictor, "v2", TOY, rows=store)
    back_v2.set_labels(samples[0].name, samples[0].image, samples[0].sparse)
    assert back_v2.rows_loaded == 1 and back_v2._records[samples[0].name].enc_version == "v2"


def test_gather_rows_equals_indexing_the_concatenation() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 3)).astype(np.float16) for n in (5, 0, 7, 1, 4)]
    whole = np.concatenate(parts)
    for idx in (np.sort(rng.choice(len(whole), 9, replace=False)), rng.permutation(len(whole))[:6],
                np.arange(len(whole)), np.zeros(0, np.int64)):
        assert np.array_equal(gather_rows(parts, idx), whole[idx])
