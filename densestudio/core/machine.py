"""What belongs to this machine rather than to a project: its folders and its root mapping.

A shared project names files by the paths of the machine that imported them (its images on
a NAS, its runs folder). Another machine may mount the same share elsewhere; the mapping
file ``roots.json`` in the config folder says so, once per machine::

    {"/mnt/nas/line3": "/Volumes/line3", "/srv/images": "Z:\\\\images"}

Every stored path that starts with a key is read as the local value (and a local path under a
value is stored under its key), so images, checkpoints and the files root of a shared
project all follow. ``DENSESTUDIO_CONFIG_DIR`` / ``DENSESTUDIO_CACHE_DIR`` /
``DENSESTUDIO_DATA_DIR`` override the folders (tests, portable installs).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("densestudio")

ROOTS_FILE = "roots.json"


def _base(env: str, xdg: str, default: str, windows: str, mac: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get(windows) or Path.home() / "AppData" / "Local") / "densestudio"
    if sys.platform == "darwin":
        return Path.home() / "Library" / mac / "densestudio"
    return Path(os.environ.get(xdg) or Path.home() / default) / "densestudio"


def config_dir() -> Path:
    """Per-user settings (the same folder the GUI keeps its preferences in)."""
    return _base("DENSESTUDIO_CONFIG_DIR", "XDG_CONFIG_HOME", ".config", "LOCALAPPDATA",
                 "Preferences")


def cache_dir() -> Path:
    """Regenerable per-machine data (thumbnails and decoded images of shared projects)."""
    return _base("DENSESTUDIO_CACHE_DIR", "XDG_CACHE_HOME", ".cache", "LOCALAPPDATA", "Caches")


def data_dir() -> Path:
    """Per-machine data that is not a cache (offline label journals, local run folders)."""
    return _base("DENSESTUDIO_DATA_DIR", "XDG_DATA_HOME", ".local/share", "LOCALAPPDATA",
                 "Application Support")


def _split(path: str) -> list[str]:
    return [p for p in path.replace("\\", "/").split("/") if p]


def _under(path: str, root: str) -> str | None:
    """The rest of ``path`` below ``root`` ('' for the root itself), or None."""
    if path.startswith(("/", "\\")) != root.startswith(("/", "\\")):
        return None
    parts, base = _split(path), _split(root)
    if not base or parts[: len(base)] != base:
        return None
    return "/".join(parts[len(base):])


def _join(root: str, rest: str) -> str:
    if not rest:
        return root
    sep = "\\" if "\\" in root and "/" not in root else "/"
    return root.rstrip("/\\") + sep + rest.replace("/", sep)


@dataclass(frozen=True)
class RootMap:
    """Stored root -> local root pairs, longest first."""

    pairs: tuple[tuple[str, str], ...] = ()

    def to_local(self, stored: str) -> str:
        for root, local in self.pairs:
            rest = _under(stored, root)
            if rest is not None:
                return _join(local, rest)
        return stored

    def to_stored(self, local: str) -> str:
        for root, mapped in sorted(self.pairs, key=lambda p: -len(p[1])):
            rest = _under(local, mapped)
            if rest is not None:
                return _join(root, rest)
        return local


_active: RootMap | None = None


def load_root_map() -> RootMap:
    """Read ``roots.json`` again (a project being opened picks up an edited file)."""
    global _active
    path = config_dir() / ROOTS_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raw = {}
    except (OSError, ValueError) as exc:
        log.warning("Ignoring the root mapping %s: %s", path, exc)
        raw = {}
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in raw.items()):
        log.warning("Ignoring the root mapping %s: it must map folder paths to folder paths",
                    path)
        raw = {}
    pairs = sorted(raw.items(), key=lambda kv: -len(kv[0]))
    _active = RootMap(tuple(pairs))
    return _active


def root_map() -> RootMap:
    return _active if _active is not None else load_root_map()


def save_root_map(mapping: dict[str, str]) -> Path:
    """Write this machine's mapping (used by ``densestudio map-root``)."""
    path = config_dir() / ROOTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(ROOTS_FILE + ".tmp")
    tmp.write_text(json.dumps(mapping, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    load_root_map()
    return path
