"""One way to write times and shares for people, and one progress-event base class."""

from __future__ import annotations

import math

from densestudio.core import formatting
from densestudio.core.importer import ImportProgress
from densestudio.core.progress import Progress
from densestudio.ml import events
from densestudio.ml.crossval import AuditProgress, FoldEnded
from densestudio.ml.report import ReportProgress


def test_eta_is_a_clock_and_unknown_until_known() -> None:
    assert formatting.eta(42) == "0:42"
    assert formatting.eta(725.4) == "12:05"
    assert formatting.eta(3723) == "1:02:03"
    assert formatting.eta(None) == formatting.eta(math.nan) == formatting.eta(-1) == "—"
    assert formatting.eta(None, unknown="--:--") == "--:--"


def test_estimates_are_rounded_and_shares_are_percentages() -> None:
    assert formatting.duration(3) == "10 s"
    assert formatting.duration(44) == "40 s"
    assert formatting.duration(600) == "10 min"
    assert formatting.duration(4800) == "1 h 20 min"
    assert formatting.percent(0.9782) == "97.8 %"
    assert formatting.percent(0.5, digits=0) == "50 %"
    assert formatting.percent(None) == formatting.percent(math.nan) == "—"
    assert formatting.html_text("a<b & c") == "a&lt;b &amp; c"


def test_progress_events_share_one_base_class() -> None:
    """Workers thin out exactly these (the newest wins); every other event is delivered."""
    progress = [events.PreparingData, events.BatchProgress, events.EvaluationProgress,
                events.WeightsDownload, ImportProgress, AuditProgress, ReportProgress]
    assert all(issubclass(cls, Progress) for cls in progress)
    kept = [events.RunStarted, events.EpochEnded, events.EpochsPlanned, events.RunFinished,
            events.RunFailed, events.RunCancelled, events.ImagesSkipped, FoldEnded]
    assert not any(issubclass(cls, Progress) for cls in kept)
