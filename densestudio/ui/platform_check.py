"""Before the QApplication exists: can Qt open a window on this Linux desktop?

On a bare Linux desktop Qt's X11 platform plugin (xcb) fails to load when system libraries it
links against are missing, and Qt then aborts with a generic "could not load the Qt platform
plugin" (naming the wrong library, xcb-cursor0, even when that one is installed). This
module asks the dynamic loader (``ldd`` on the plugin) which libraries are missing and says
which packages provide them. It imports no Qt library, so it runs before Qt could abort.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package, Arch package), for what the xcb plugin
# of PySide6 (libqxcb.so and libQt6XcbQpa.so.6) links against outside the wheel (ldd).
PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil",
                                "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx", "libglvnd"),
    "libGLdispatch.so.0": ("libglvnd0", "libglvnd", "libglvnd"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
}

Probe = Callable[[Path], list[str]]


def xcb_plugin() -> Path | None:
    """PySide6's libqxcb.so (None when PySide6 or its xcb plugin is not there)."""
    spec = importlib.util.find_spec("PySide6")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        plugin = Path(folder) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def ldd_missing(library: Path) -> list[str]:
    """Sonames ``library`` needs (directly or not) that the dynamic loader cannot find."""
    try:
        out = subprocess.run(["ldd", str(library)], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []  # no ldd: let Qt try and report
    return sorted({line.split("=>")[0].strip() for line in out.splitlines()
                   if "not found" in line})


def uses_xcb(env: Mapping[str, str]) -> bool:
    """Will Qt pick its X11 plugin? Yes unless QT_QPA_PLATFORM names another one first, or
    it is unset on a Wayland desktop (Qt then prefers its Wayland plugin)."""
    chosen = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen == "xcb"
    return not env.get("WAYLAND_DISPLAY")


def missing_libraries_message(missing: list[str]) -> str:
    known = [PACKAGES[s] for s in missing if s in PACKAGES]
    unknown = [s for s in missing if s not in PACKAGES]

    def names(column: int) -> str:
        return " ".join(dict.fromkeys(p[column] for p in known))

    lines = [
        "DenseStudio cannot open its window: Qt's X11 (xcb) platform plugin needs system "
        "libraries that are not installed:",
        f"  {', '.join(missing)}",
    ]
    if known:
        lines += ["Install them (Debian/Ubuntu):", f"  sudo apt install {names(0)}",
                  f"Other systems: Fedora: sudo dnf install {names(1)}; "
                  f"Arch: sudo pacman -S {names(2)}"]
    if unknown:
        lines.append(f"Also install the packages that provide: {', '.join(unknown)}")
    lines.append("Then run DenseStudio again.")
    return "\n".join(lines)


NO_DISPLAY = (
    "DenseStudio cannot open its window: there is no display (neither DISPLAY nor "
    "WAYLAND_DISPLAY is set).\n"
    "Start it from a desktop session, or, to run it headless, set QT_QPA_PLATFORM=offscreen.\n"
    "The command-line tools need no display: densestudio --help"
)


def display_problem(env: Mapping[str, str] | None = None, platform: str | None = None,
                    probe: Probe = ldd_missing, plugin: Path | None = None) -> str | None:
    """Why Qt could not open a window here, as a message for the user; None = go ahead.

    Only on Linux and only when Qt would use its X11 plugin; ``probe`` lists the missing
    libraries of the plugin (``ldd`` by default; tests stub it).
    """
    env = os.environ if env is None else env
    if not (platform or sys.platform).startswith("linux") or not uses_xcb(env):
        return None
    if not env.get("DISPLAY"):
        return NO_DISPLAY
    plugin = plugin or xcb_plugin()
    if plugin is None:
        return None  # not PySide6's wheel layout: let Qt report
    missing = probe(plugin)
    return missing_libraries_message(missing) if missing else None
