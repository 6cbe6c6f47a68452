"""Child process for the crash-consistency harness: does real work and reports progress.

    python crash_child.py import PROJECT FOLDER
    python crash_child.py label PROJECT SEED OPS
    python crash_child.py label-undo PROJECT SEED OPS   (each op: label, undo, redo)
    python crash_child.py train PROJECT [RESUME_RUN_ID]

Each acknowledged step is printed as one line ("ACK n") only after the store call that did
it has returned, so the parent knows exactly which changes were acknowledged when it kills
the process with SIGKILL.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densestudio.core.importer import ImportOptions, ImportProgress, run_import
from densestudio.core.store import Project


def label_ops(
    seed: int, n_ops: int, image_ids: list[int], class_ids: list[int]
) -> Iterator[tuple[list[int], int | None]]:
    """The deterministic sequence of (image ids, label) operations for a seed."""
    rng = random.Random(seed)
    for _ in range(n_ops):
        ids = rng.sample(image_ids, rng.randint(1, min(40, len(image_ids))))
        label = rng.choice([*class_ids, None])
        yield ids, label


def main() -> None:
    mode, project_path = sys.argv[1], Path(sys.argv[2])
    project = Project.open(project_path)
    print("READY", flush=True)
    if mode == "import":

        def on_event(event: object) -> None:
            if isinstance(event, ImportProgress) and event.phase == "importing":
                print(f"ACK {event.done}", flush=True)

        run_import(project, [Path(sys.argv[3])], ImportOptions(labels_from_subfolders=True),
                   on_event=on_event)
    elif mode == "label":
        seed, n_ops = int(sys.argv[3]), int(sys.argv[4])
        ids = project.image_ids()
        classes = [c.id for c in project.classes()]
        for n, (op_ids, label) in enumerate(label_ops(seed, n_ops, ids, classes)):
            project.set_labels(op_ids, label)
            print(f"ACK {n}", flush=True)
    elif mode == "label-undo":
        seed, n_ops = int(sys.argv[3]), int(sys.argv[4])
        ids = project.image_ids()
        classes = [c.id for c in project.classes()]
        for n, (op_ids, label) in enumerate(label_ops(seed, n_ops, ids, classes)):
            change = project.set_labels(op_ids, label, how="bulk")
            print(f"ACK {n} label", flush=True)
            project.undo_labels(change)
            print(f"ACK {n} undo", flush=True)
            project.redo_labels(change)
            print(f"ACK {n} redo", flush=True)
    elif mode == "train":
        train(project, int(sys.argv[3]) if len(sys.argv) > 3 else None)
    print("DONE", flush=True)


TINY_TRAINING = dict(arch="densenet_bc_tiny", img_size=32, epochs=6, batch_size=8,
                     device="cpu", amp=False, tta=False, ema=False)


def train(project: Project, resume_run_id: int | None) -> None:
    import torch

    from densestudio.ml.config import TrainConfig
    from densestudio.ml.events import BatchProgress, CheckpointSaved, RunStarted
    from densestudio.ml.train import fit

    torch.set_num_threads(1)

    def on_event(event: object) -> None:
        if isinstance(event, RunStarted):
            print(f"RUN {event.run_id}", flush=True)
        elif isinstance(event, (BatchProgress, CheckpointSaved)):
            print(f"ACK {type(event).__name__} {getattr(event, 'epoch', '')}", flush=True)

    fit(project, TrainConfig(**TINY_TRAINING), on_event=on_event, resume_run_id=resume_run_id)


if __name__ == "__main__":
    main()
