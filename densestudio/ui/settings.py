"""User preferences (a dataclass in a JSON file under the config dir) and QSettings helpers.

QSettings keeps only window geometry/state and the recent-projects list
(docs/ARCHITECTURE.md, "Settings").
``DENSESTUDIO_CONFIG_DIR`` overrides the config folder (tests, portable installs).

``user_name`` is who the label history and approvals record. core reads it from
``$DENSESTUDIO_USER`` (``core.store.current_user``), so ``apply_user_name`` sets that variable
from the preference at start-up and whenever it changes; an empty preference leaves what the
environment says (else the OS login name is recorded).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import cast

from PySide6.QtCore import QSettings, QStandardPaths

from densestudio.core.store import USER_ENV, current_user

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
    user_name: str = ""  # who label changes and approvals are recorded as ("": OS user)


_env_before: list[str | None] = []  # $DENSESTUDIO_USER before a preference replaced it


def apply_user_name(prefs: Preferences) -> str:
    """Make ``prefs.user_name`` the name core records (``$DENSESTUDIO_USER``); an empty
    preference puts back what the environment said before (else the OS user is recorded).
    Returns the name now in effect."""
    name = prefs.user_name.strip()[:64]
    if name:
        if not _env_before:
            _env_before.append(os.environ.get(USER_ENV))
        os.environ[USER_ENV] = name
    elif _env_before:
        before = _env_before.pop()
        if before is None:
            os.environ.pop(USER_ENV, None)
        else:
            os.environ[USER_ENV] = before
    return current_user()


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
    return [str(v) for v in cast("list[object]", value or [])]  # a list, or nothing stored


def _entry(path: str | Path) -> str:
    """How a project is keyed in the recent lists: a file's absolute path, or the URL."""
    return str(path) if "://" in str(path) else str(Path(path).resolve())


def add_recent_project(path: str | Path) -> list[str]:
    """Remember a project file (absolute) or a shared project's URL (given without its
    password: ``Project.location``)."""
    path = _entry(path)
    items = [p for p in recent_projects() if p != path]
    items.insert(0, path)
    del items[MAX_RECENT:]
    qsettings().setValue("recentProjects", items)
    return items


def recent_title(entry: str) -> str:
    """How a recent project is listed: a file's name, or "DATABASE on HOST (shared)"."""
    if "://" not in entry:
        return Path(entry).name
    from densestudio.core.db import ServerURL, project_target
    from densestudio.core.errors import DenseStudioError

    try:
        target = project_target(entry)
    except (DenseStudioError, ValueError):  # an odd entry is still listed, as it is
        return entry
    if isinstance(target, ServerURL):
        return f"{target.name} on {target.url.host or 'this computer'} (shared)"
    return entry


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
    info[_entry(path)] = {"images": int(images), "opened": opened}
    qsettings().setValue("recentProjectInfo", json.dumps(info))


def remove_recent_project(path: str | Path) -> list[str]:
    items = [p for p in recent_projects() if p != str(path)]
    qsettings().setValue("recentProjects", items)
    return items


def clear_recent_projects() -> None:
    qsettings().setValue("recentProjects", [])
