"""One labeler for the shared-project tests: labels at random, on purpose from a view that
is a little out of date, and reports every acknowledged change and every conflict.

    python labeler_child.py URL NAME SEED OPS

Prints one JSON line per step after the store call returned: {"ack": [[id, version,
label], ...], "conflicts": [id, ...]}, then "DONE".
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densestudio.core.store import Project, Seen

REFRESH_EVERY = 8  # steps between re-reading the view: changes in between may conflict


def main() -> None:
    url, name, seed, n_ops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    with Project.open(url) as project:
        ids = project.image_ids()
        classes = [c.id for c in project.classes()]
        view: dict[int, int] = {}
        print("READY", flush=True)
        for step in range(n_ops):
            if step % REFRESH_EVERY == 0:
                view = {r.id: r.label_version for r in project.page(limit=len(ids))}
            chosen = rng.sample(ids, rng.randint(1, 3))
            label = rng.choice(classes)
            change = project.set_labels(chosen, label, who=name, expected=Seen(dict(view)))
            view.update(change.versions)
            print(json.dumps({"ack": [[i, v, label] for i, v in change.versions],
                              "conflicts": [c.image_id for c in change.conflicts]}),
                  flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
