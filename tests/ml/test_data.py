"""Decode-once cache, augmentation, sampling."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import torch

from densestudio.core.preprocess import Preprocessing, legacy
from densestudio.ml import data as D

from .conftest import write_images


def _items(files: list[tuple[Path, str]]) -> list[D.CacheItem]:
    from densestudio.core.imaging import file_hash

    return [D.CacheItem(i, str(p), file_hash(p)) for i, (p, _) in enumerate(files)]


def test_disk_cache_means_no_second_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = _items(write_images(tmp_path / "i", 4))
    cache = D.DecodedCache(tmp_path / "cache")
    first, failures = cache.load(items, legacy(32, "L"))
    assert first.shape == (12, 1, 32, 32) and first.dtype == torch.uint8 and not failures

    def no_decode(*_a: object, **_k: object) -> NoReturn:
        raise AssertionError("decoded again")

    monkeypatch.setattr(Preprocessing, "load", no_decode)
    seen = []
    second, _ = D.DecodedCache(tmp_path / "cache").load(
        items, legacy(32, "L"), on_progress=lambda d, t, f: seen.append((d, t, f))
    )
    assert torch.equal(first[:], second[:])
    assert seen[-1] == (12, 12, 12)
    # Another size, mode or fit is another cache entry.
    monkeypatch.undo()
    rgb, _ = cache.load(items[:2], legacy(40, "RGB"))
    assert rgb.shape == (2, 3, 40, 40)
    wide, _ = cache.load(items[:2], Preprocessing(64, 32, "L"))
    assert wide.shape == (2, 1, 32, 64) and not torch.equal(wide[:][:, :, :, :32], first[:2])


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out, failures = D.DecodedCache(None).load([D.CacheItem(7, str(bad), "x" * 32)],
                                              legacy(32, "L"))
    assert out.shape == (1, 1, 32, 32)
    assert failures[0].image_id == 7 and failures[0].reason


def test_preprocessing_matches_for_paths_and_pil(tmp_path: Path) -> None:
    from PIL import Image

    (p, _), *_ = write_images(tmp_path / "i", 1)
    prep = Preprocessing(48, 48, "L")
    a = prep.load(p)
    b = prep.load(Image.open(p))
    assert a.shape == (1, 48, 48) and np.array_equal(a, b)


@pytest.mark.parametrize("preset", ["none", "light", "inspection"])
def test_augment_batch_is_batched_reproducible_and_in_range(preset: str) -> None:
    x = torch.rand(16, 1, 32, 32)
    a = D.augment_batch(x, preset, torch.Generator().manual_seed(1))
    b = D.augment_batch(x, preset, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    if preset == "none":
        assert torch.equal(a, x)
    else:
        assert not torch.equal(a, x)


def test_balanced_sampler_and_class_weights() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)
    order = D.epoch_order(labels, "sampler", torch.Generator().manual_seed(0))
    frac = (labels[order] == 1).float().mean().item()
    assert 0.35 < frac < 0.65
    w = D.class_weights(labels, 2)
    assert w[1] / w[0] == pytest.approx(9.0)
    perm = D.epoch_order(labels, "none", torch.Generator().manual_seed(0))
    assert sorted(perm.tolist()) == list(range(100))


def test_channel_stats() -> None:
    x = torch.full((2, 1, 4, 4), 51, dtype=torch.uint8)
    mean, std = D.channel_stats(x)
    assert mean[0] == pytest.approx(0.2) and std[0] >= 1e-3
