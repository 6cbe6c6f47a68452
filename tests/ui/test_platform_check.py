"""First launch on a bare Linux desktop: missing X11 libraries or no display become one clear
message (exit code 2) before Qt starts, instead of Qt's generic platform-plugin abort."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from densestudio.ui import platform_check
from densestudio.ui.platform_check import display_problem

X11 = {"DISPLAY": ":0"}
PLUGIN = Path("/x/libqxcb.so")


class StubProbe:
    """Stands in for ``ldd``: these sonames are missing; remembers what it was asked about."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        self.asked: list[Path] = []

    def __call__(self, plugin: Path) -> list[str]:
        self.asked.append(plugin)
        return self.missing


def test_missing_libraries_name_the_packages_to_install() -> None:
    probe = StubProbe(["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxkbcommon-x11.so.0",
                             "libfoo.so.7"])
    message = display_problem(X11, "linux", probe, PLUGIN)
    assert probe.asked == [PLUGIN]
    assert "libxcb-icccm.so.4" in message and "libfoo.so.7" in message
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4 libxkbcommon-x11-0\n" in message
    other = next(line for line in message.splitlines() if line.startswith("Other systems"))
    assert "dnf install xcb-util-cursor xcb-util-wm libxkbcommon-x11;" in other
    assert "pacman -S xcb-util-cursor xcb-util-wm libxkbcommon-x11" in other


def test_nothing_missing_means_no_message() -> None:
    assert display_problem(X11, "linux", StubProbe([]), PLUGIN) is None


@pytest.mark.parametrize(("env", "platform"), [
    (X11, "win32"),
    (X11, "darwin"),
    ({**X11, "QT_QPA_PLATFORM": "offscreen"}, "linux"),
    ({"QT_QPA_PLATFORM": "wayland"}, "linux"),
    ({**X11, "WAYLAND_DISPLAY": "wayland-0"}, "linux"),  # Qt prefers Wayland there
])
def test_only_linux_with_the_xcb_plugin_is_checked(env: dict, platform: str) -> None:
    probe = StubProbe(["libxcb-icccm.so.4"])
    assert display_problem(env, platform, probe, PLUGIN) is None
    assert probe.asked == []


@pytest.mark.parametrize("env", [
    {**X11, "QT_QPA_PLATFORM": "xcb"},
    {**X11, "QT_QPA_PLATFORM": "xcb;wayland", "WAYLAND_DISPLAY": "wayland-0"},
    {**X11, "QT_QPA_PLATFORM": "xcb:nomitshm"},
])
def test_xcb_chosen_explicitly_is_checked(env: dict) -> None:
    assert "libxcb-keysyms1" in display_problem(env, "linux",
                                                StubProbe(["libxcb-keysyms.so.1"]), PLUGIN)


@pytest.mark.parametrize("env", [{}, {"QT_QPA_PLATFORM": "xcb"}])
def test_no_display_says_so_and_how_to_run_headless(env: dict) -> None:
    message = display_problem(env, "linux", StubProbe([]), PLUGIN)
    assert "no display" in message and "QT_QPA_PLATFORM=offscreen" in message


def test_ldd_output_is_read_for_not_found_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    out = ("\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x1)\n"
           "\tlibxcb-icccm.so.4 => not found\n\tlibxcb-keysyms.so.1 => not found\n"
           "\tlibxcb-icccm.so.4 => not found\n")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, out))
    assert platform_check.ldd_missing(PLUGIN) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]

    def no_ldd(*_a: object, **_k: object) -> None:
        raise FileNotFoundError("ldd")

    monkeypatch.setattr(subprocess, "run", no_ldd)
    assert platform_check.ldd_missing(PLUGIN) == []


def test_main_exits_2_with_the_message_before_qt(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    import densestudio.__main__ as entry

    monkeypatch.setattr(sys, "argv", ["densestudio"])
    monkeypatch.setattr(platform_check, "display_problem", lambda: "Install libxcb-icccm4")
    monkeypatch.setitem(sys.modules, "densestudio.ui.app", None)  # importing it would fail
    assert entry.main() == 2
    assert capsys.readouterr().err == "Install libxcb-icccm4\n"


def test_the_check_imports_no_qt() -> None:
    code = ("import sys, densestudio.ui.platform_check as c; c.display_problem(); "
            "sys.exit(any(m.startswith('PySide6') for m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, "-c", code], env={**env, "DISPLAY": ":0"}, timeout=60)
    assert done.returncode == 0


@pytest.mark.skipif(shutil.which("readelf") is None or sys.platform != "linux",
                    reason="needs readelf on Linux")
def test_the_package_table_covers_what_the_real_plugin_links() -> None:
    plugin = platform_check.xcb_plugin()
    assert plugin is not None
    qt_lib = plugin.parents[2] / "lib"
    needed: set[str] = set()
    for library in (plugin, *qt_lib.glob("libQt6XcbQpa.so*")):
        out = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True,
                             check=True).stdout
        needed |= {line.split("[")[1].rstrip("]") for line in out.splitlines() if "NEEDED" in line}
    in_wheel = {p.name for p in qt_lib.iterdir()}
    runtime = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libpthread.so.0",
               "libdl.so.2"}
    assert needed - in_wheel - runtime <= set(platform_check.PACKAGES)
    assert "libxcb-cursor.so.0" in needed  # the plugin really was read
