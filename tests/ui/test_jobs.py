"""Settings the app's background training runs under."""

from __future__ import annotations

import gc

import torch

from densestudio.ui.jobs import background_training


def test_background_training_keeps_the_gui_thread_free() -> None:
    """A full garbage collection mid-run walks every object while holding the GIL (150-200
    ms with torch, Qt and SQLAlchemy loaded): the GUI froze once per run. The objects alive
    when a run starts are taken out of the collector's passes; torch gets all cores but one
    and its previous thread count back afterwards."""
    from densestudio.ml.threads import wait_for_warm_up

    wait_for_warm_up()  # (it freezes too, at the end of the start-up imports)
    gc.unfreeze()
    before = torch.get_num_threads()
    try:
        with background_training(threads=1, nice=0):
            assert gc.get_freeze_count() > 100_000
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == before
    finally:
        gc.unfreeze()
