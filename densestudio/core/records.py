"""Value types of the project API (``core.store``) that the modules below the store use
too (history, thumbnails): here, so that those modules need not import the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    color: str
    position: int
    shortcut: str | None


@dataclass(frozen=True)
class ImageInfo:
    id: int
    path: str
    filename: str
    folder: str
    content_hash: str
    byte_size: int
    width: int
    height: int
    mode: str
    bit_depth: int
    added_at: datetime
    missing: bool
    label_id: int | None
    label_source: str | None
    labeled_by: str | None
    labeled_at: datetime | None
    split: str | None
    label_version: int = 0  # what a change made from this view expects (see Seen)

    @property
    def name(self) -> str:
        return Path(self.path).name
