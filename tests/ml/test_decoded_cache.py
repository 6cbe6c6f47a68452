"""The on-disk decoded-image cache: reads per batch, crash-safe appends, concurrent writers."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from densestudio.core.errors import CancelledError
from densestudio.core.imaging import file_hash
from densestudio.core.preprocess import Preprocessing, legacy
from densestudio.core.progress import CancelToken
from densestudio.ml import data as D
from densestudio.ml import decoded_cache as C

from .conftest import write_images

PREP = legacy(32, "L")


def _items(files) -> list[D.CacheItem]:  # noqa: ANN001
    return [D.CacheItem(i, str(p), file_hash(p)) for i, (p, _) in enumerate(files)]


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    lock = threading.Lock()
    original = Preprocessing.load

    def counting(self, source, content_hash=None):  # noqa: ANN001, ANN202
        with lock:
            calls.append(str(source))
        return original(self, source, content_hash)

    monkeypatch.setattr(Preprocessing, "load", counting)
    return calls


def test_pixels_read_rows_like_a_tensor() -> None:
    x = torch.arange(5 * 1 * 2 * 2, dtype=torch.uint8).view(5, 1, 2, 2)
    px = D.Pixels.of(x)
    assert px.shape == (5, 1, 2, 2) and len(px) == 5 and px.dtype == torch.uint8
    idx = torch.tensor([3, 0, 3, 1])  # unsorted, with a repeat (sampling with replacement)
    assert torch.equal(px[idx], x[idx])
    assert torch.equal(px[1:4], x[1:4]) and torch.equal(px[2], x[2])
    sub = px.take([4, 2])
    assert torch.equal(sub[:], x[[4, 2]]) and torch.equal(sub[np.array([1])], x[[2]])
    holes = D.Pixels(px._source, np.array([1, -1]), (1, 2, 2))  # -1: could not be decoded
    assert torch.equal(holes[:], torch.stack([x[1], torch.zeros_like(x[1])]))


def test_a_torn_tail_is_ignored_and_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _items(write_images(tmp_path / "i", 4))
    cache = D.DecodedCache(tmp_path / "cache")
    first, _ = cache.load(items[:6], PREP)
    folder = cache.folder(PREP)
    data, index = folder / "pixels.u8", folder / "index.bin"
    # A crash mid-batch: rows written without their records, and half a record.
    with open(data, "ab") as f:
        f.write(b"\xff" * (32 * 32 * 3 + 100))
    with open(index, "ab") as f:
        f.write(items[6].content_hash.encode()[:20])
    calls = _count_decodes(monkeypatch)
    again, _ = D.DecodedCache(tmp_path / "cache").load(items[:6], PREP)
    assert calls == [] and torch.equal(again[:], first[:])
    # The next writer overwrites the torn tail; everything reads back exactly.
    whole, failures = D.DecodedCache(tmp_path / "cache").load(items, PREP)
    assert not failures and len(calls) == 6
    assert index.stat().st_size == 12 * C.RECORD
    monkeypatch.undo()
    fresh, _ = D.DecodedCache(None).load(items, PREP)
    assert torch.equal(whole[:], fresh[:])
    # Records whose rows never reached the data file are not trusted either.
    with open(index, "ab") as f:
        f.write(np.array([b"f" * 32], dtype="S64").tobytes())
    store = C._Store(folder, (1, 32, 32))
    assert len(store.refresh()) == 12


def test_two_writers_split_the_work_and_store_each_image_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(C, "BATCH", 4)
    items = _items(write_images(tmp_path / "i", 8))  # 24 images
    calls = _count_decodes(monkeypatch)
    results: dict[int, torch.Tensor] = {}

    def load(rank: int) -> None:
        px, failures = D.DecodedCache(tmp_path / "cache").load(items, PREP, workers=1,
                                                                share=(rank, 2))
        assert not failures
        results[rank] = px[:]

    threads = [threading.Thread(target=load, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(results[0], results[1])
    assert len(calls) < 2 * len(items)  # not everything twice
    store = C._Store(D.DecodedCache(tmp_path / "cache").folder(PREP), (1, 32, 32))
    assert len(store.refresh()) == store.count == len(items)  # each image stored once


def test_cancel_keeps_the_finished_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "BATCH", 4)
    items = _items(write_images(tmp_path / "i", 4))
    cancel = CancelToken()

    def progress(done: int, total: int, from_disk: int) -> None:
        if done >= 4:
            cancel.cancel()

    with pytest.raises(CancelledError):
        D.DecodedCache(tmp_path / "cache").load(items, PREP, progress, cancel)
    seen = []
    D.DecodedCache(tmp_path / "cache").load(items, PREP, lambda *a: seen.append(a))
    assert seen[0] == (4, 12, 4)


def test_an_unwritable_cache_costs_speed_not_the_run(tmp_path: Path) -> None:
    items = _items(write_images(tmp_path / "i", 2))
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    px, failures = D.DecodedCache(blocked).load(items, PREP)
    fresh, _ = D.DecodedCache(None).load(items, PREP)
    assert not failures and torch.equal(px[:], fresh[:])


def test_nothing_holds_all_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading (decoding into the cache), reading batches and the normalization statistics
    allocate a batch at a time (numpy's allocations are traced; torch's are per batch)."""
    monkeypatch.setattr(C, "BATCH", 8)
    items = _items(write_images(tmp_path / "i", 80))  # 240 images
    prep = Preprocessing(96, 96, "L")
    all_bytes = len(items) * 96 * 96
    D.channel_stats(torch.zeros((2, 1, 8, 8), dtype=torch.uint8))  # lazy imports first
    tracemalloc.start()
    try:
        px, _ = D.DecodedCache(tmp_path / "cache").load(items, prep, workers=1)
        for start in range(0, len(px), 16):
            px[torch.arange(start, min(start + 16, len(px)))]
        D.channel_stats(px)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < all_bytes / 3, (peak, all_bytes)
