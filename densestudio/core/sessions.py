"""What the modules below the store need of a project: its database sessions.

``core.store.Project`` has these; history, changes and the other modules that the store
itself uses take a ``Sessions`` instead of a ``Project``, so they need not import the store
(which imports them).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session


class Sessions(Protocol):
    @property
    def shared(self) -> bool:
        """A shared project on a database server."""
        ...

    @property
    def engine(self) -> Engine: ...

    def session(self) -> AbstractContextManager[Session]:
        """A session for reads."""
        ...

    def transaction(self) -> AbstractContextManager[Session]:
        """A session whose changes commit together at the end, or not at all."""
        ...
