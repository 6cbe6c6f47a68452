"""Sign-off records: must-pass ("golden") images and approvals of runs for release.

An approval records who approved which run, when and why, with the run's data fingerprint,
its metrics and the label history's head hash at that moment. Approvals are append-only and
hash-chained like the label history (core/hashchain.py); a newer approval supersedes an
older one as "the approved run" (the gate's and the export's default).

Golden images are a set the user curates (add / remove marks); the release gate
(ml/gate.py) fails a candidate model that gets any of them wrong.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, select

from densestudio.core import hashchain, history, runs
from densestudio.core.errors import ProjectError
from densestudio.core.models import Approval, GoldenImage, Image, LabelEvent, utcnow
from densestudio.core.store import Project, current_user, normalize_author

if TYPE_CHECKING:
    from sqlalchemy import CursorResult

APPROVAL_CHAIN = hashchain.Chain(
    "approvals", Approval,
    ("id", "run_id", "run_name", "approved_by", "approved_at", "why", "data_fingerprint",
     "class_names_json", "metrics_json", "label_head"),
)


@dataclass(frozen=True)
class ApprovalInfo:
    id: int
    run_id: int
    run_name: str
    approved_by: str
    approved_at: datetime
    why: str
    data_fingerprint: str
    class_names: tuple[str, ...]
    metrics: dict[str, Any]
    label_head: str
    hash: str


@dataclass(frozen=True)
class GoldenInfo:
    image_id: int
    added_by: str
    added_at: datetime
    note: str


@dataclass(frozen=True)
class VerificationReport:
    """Both chains checked, plus approvals whose label-history hash is not in the history."""

    chains: tuple[hashchain.ChainStatus, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


# ------------------------------------------------------------------ approvals
def _approval_info(r: Approval) -> ApprovalInfo:
    return ApprovalInfo(r.id, r.run_id, r.run_name, r.approved_by, r.approved_at, r.why,
                        r.data_fingerprint, tuple(json.loads(r.class_names_json or "[]")),
                        json.loads(r.metrics_json or "{}"), r.label_head, r.hash)


def approve_run(project: Project, run_id: int, why: str, by: str | None = None) -> ApprovalInfo:
    """Record that ``run_id`` is approved for release (append-only)."""
    why = (why or "").strip()
    if not why:
        raise ProjectError("Say why the run is approved (--why \"...\"): it is kept with the "
                           "approval.")
    info = runs.get_run(project, run_id)
    if info.status != "finished" or info.kind != runs.TRAIN_KIND:
        raise ProjectError(f"Run {run_id} is not a finished training run (status: "
                           f"{info.status}); only finished runs can be approved.")
    metrics = {k: v for k, v in info.metrics.items() if not isinstance(v, float) or v == v}
    who = normalize_author(by) if by else current_user()
    with project.transaction() as s:
        row = {
            "run_id": run_id, "run_name": info.name or "",
            "approved_by": who, "approved_at": utcnow(), "why": why,
            "data_fingerprint": str(info.metrics.get("data_fingerprint") or ""),
            "class_names_json": json.dumps(list(info.class_names)),
            "metrics_json": json.dumps(metrics, sort_keys=True),
            "label_head": hashchain.tail(s, history.LABEL_CHAIN)[1],
        }  # fmt: skip
        hashchain.append(s, APPROVAL_CHAIN, [row])
        new_id = row["id"]
    return next(a for a in approvals(project) if a.id == new_id)


def approvals(project: Project, run_id: int | None = None) -> list[ApprovalInfo]:
    """Approvals, oldest first (only ``run_id``'s when given)."""
    with project.session() as s:
        stmt = select(Approval).order_by(Approval.id)
        if run_id is not None:
            stmt = stmt.where(Approval.run_id == run_id)
        return [_approval_info(r) for r in s.scalars(stmt)]


def latest_approval(project: Project, exclude_run: int | None = None) -> ApprovalInfo | None:
    """The newest approval of a run that still exists (optionally not ``exclude_run``)."""
    existing = {r.id for r in runs.list_runs(project, kind=None)}
    for a in reversed(approvals(project)):
        if a.run_id in existing and a.run_id != exclude_run:
            return a
    return None


def approved_run_id(project: Project) -> int | None:
    a = latest_approval(project)
    return a.run_id if a else None


def is_approved(project: Project, run_id: int) -> bool:
    return bool(approvals(project, run_id))


# ------------------------------------------------------------------ golden images
def add_golden(project: Project, image_ids: Sequence[int], note: str = "",
               by: str | None = None) -> int:
    """Mark images as must-pass; returns how many were newly marked."""
    ids = sorted({int(i) for i in image_ids})
    who = normalize_author(by) if by else current_user()
    with project.transaction() as s:
        known = set(s.scalars(select(Image.id).where(Image.id.in_(ids)))) if ids else set()
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ProjectError(f"No image with id {unknown[0]} in this project.")
        marked = set(s.scalars(select(GoldenImage.image_id)
                               .where(GoldenImage.image_id.in_(ids)))) if ids else set()
        fresh = [i for i in ids if i not in marked]
        for i in fresh:
            s.add(GoldenImage(image_id=i, added_by=who, added_at=utcnow(), note=note))
    return len(fresh)


def remove_golden(project: Project, image_ids: Sequence[int]) -> int:
    ids = sorted({int(i) for i in image_ids})
    with project.transaction() as s:
        # a DELETE's result is a CursorResult (SQLAlchemy types execute() as a plain Result)
        result = cast("CursorResult[Any]", s.execute(
            delete(GoldenImage).where(GoldenImage.image_id.in_(ids))))
    return int(result.rowcount or 0)


def golden_images(project: Project) -> list[GoldenInfo]:
    with project.session() as s:
        return [GoldenInfo(r.image_id, r.added_by, r.added_at, r.note)
                for r in s.scalars(select(GoldenImage).order_by(GoldenImage.image_id))]


def golden_ids(project: Project) -> set[int]:
    with project.session() as s:
        return set(s.scalars(select(GoldenImage.image_id)))


# ------------------------------------------------------------------ verification
def verify_project(project: Project) -> VerificationReport:
    """Check the label history and the approvals (``densestudio verify``)."""
    with project.session() as s:
        labels = hashchain.verify(s, history.LABEL_CHAIN)
        approved = hashchain.verify(s, APPROVAL_CHAIN)
        heads = [(r.id, r.label_head) for r in s.scalars(select(Approval).order_by(Approval.id))]
        needed = {h for _, h in heads if h != hashchain.GENESIS}
        present = set()
        if needed:
            present = set(s.scalars(select(LabelEvent.hash).where(LabelEvent.hash.in_(needed))))
    problems = [str(p) for p in labels.problems + approved.problems]
    for approval_id, label_head in heads:
        if label_head != hashchain.GENESIS and label_head not in present:
            problems.append(f"approvals row {approval_id}: the label history it was approved "
                            "on is gone (the label row it points to was changed or deleted)")
    return VerificationReport((labels, approved), tuple(problems))
