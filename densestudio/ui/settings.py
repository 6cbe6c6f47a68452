"""User preferences (a dataclass in a JSON file under the config dir) and QSettings helpers.

QSettings keeps only window geometry/state and the recent-projects list (DESIGN rule 5).
``DENSESTUDIO_CONFIG_DIR`` overrides the config folder (tests, portable installs).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

log = logging.getLogger(__name__)

ORGANIZATION = "DenseStudio"
APPLICATION = "DenseStudio"
MAX_RECENT = 10


@dataclass
class Preferences:
    auto_advance: bool = True  # after labeling one image, jump to the next unlabeled one
    tile_size: int = 144  # gallery tile edge in px
    last_import_dir: str = ""
    last_project_dir: str = ""
    labels_from_subfolders: bool = True


def config_dir() -> Path:
    override = os.environ.get("DENSESTUDIO_CONFIG_DIR")
    if override:
        return Path(override)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
    return Path(base or Path.home() / ".config") / "densestudio"


def data_dir() -> Path:
    """Where the app keeps things it makes for the user (the demo project)."""
    override = os.environ.get("DENSESTUDIO_DATA_DIR")
    if override:
        return Path(override)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    return Path(base or Path.home() / ".local" / "share") / "densestudio"


def preferences_path() -> Path:
    return config_dir() / "preferences.json"


def load_preferences() -> Preferences:
    path = preferences_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Preferences()
    except (OSError, ValueError) as exc:
        log.warning("Ignoring unreadable preferences %s: %s", path, exc)
        return Preferences()
    known = {f.name: f.type for f in fields(Preferences)}
    defaults = Preferences()
    values = {}
    for key, value in raw.items() if isinstance(raw, dict) else ():
        if key in known and type(value) is type(getattr(defaults, key)):
            values[key] = value
    return Preferences(**values)


def save_preferences(prefs: Preferences) -> None:
    path = preferences_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(prefs), indent=2), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("Cannot save preferences to %s: %s", path, exc)


def qsettings() -> QSettings:
    return QSettings(ORGANIZATION, APPLICATION)


def recent_projects() -> list[str]:
    value = qsettings().value("recentProjects", [])
    if isinstance(value, str):  # QSettings returns a bare string for one-element lists
        value = [value]
    return [str(v) for v in (value or [])]


def add_recent_project(path: str | Path) -> list[str]:
    path = str(Path(path).resolve())
    items = [p for p in recent_projects() if p != path]
    items.insert(0, path)
    del items[MAX_RECENT:]
    qsettings().setValue("recentProjects", items)
    return items


def recent_project_info() -> dict[str, dict]:
    """What the welcome view shows beside a recent project: {path: {"images", "opened"}}."""
    try:
        value = json.loads(str(qsettings().value("recentProjectInfo", "{}") or "{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def remember_recent_project(path: str | Path, images: int, opened: str) -> None:
    """Record a project's image count and when it was opened (ISO time), for the list of
    recent projects (no project file is opened to show that list)."""
    info = {p: v for p, v in recent_project_info().items() if p in recent_projects()}
    info[str(Path(path).resolve())] = {"images": int(images), "opened": opened}
    qsettings().setValue("recentProjectInfo", json.dumps(info))


def remove_recent_project(path: str | Path) -> list[str]:
    items = [p for p in recent_projects() if p != str(path)]
    qsettings().setValue("recentProjects", items)
    return items


def clear_recent_projects() -> None:
    qsettings().setValue("recentProjects", [])
