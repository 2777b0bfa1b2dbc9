"""When a flow's task is worth retrying."""

from __future__ import annotations

from typing import Any

from core.migrations import NotMigrated


def unless_not_migrated(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect retry condition: retry a store that does not answer, not one whose tables
    need the migrations -- that needs someone to run them, and the message says so at
    once instead of after every retry's delay."""
    try:
        state.result()
    except NotMigrated:
        return False
    except Exception:
        return True
    return True
