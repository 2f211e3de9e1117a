"""Bulk import: every Flask-Session record copied into our store ahead of first use."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from ..errors import SessionStoreUnavailable
from ..ids import store_key
from ..stores import Store
from .forwarding import imported_id
from .legacy import LegacyStore, MigrationStats, Unmigratable, decode_record, to_record

logger = logging.getLogger("flask_serversession.migrate")


# -- bulk import -----------------------------------------------------------------------------------


def import_sessions(
    store: Store,
    legacy: LegacyStore,
    idle: float,
    absolute: float,
    max_size: int,
    progress: Callable[[MigrationStats], None] | None = None,
    max_keys: int | None = None,
    clock: Callable[[], float] = time.time,
) -> MigrationStats:
    """Copy every Flask-Session record into ``store`` under ``store_key(imported_id(sid))``
    and delete it from the old store; see the module docstring."""
    stats = MigrationStats()
    for sid, data, expires in legacy.scan():
        now = clock()
        try:
            if expires is not None and expires <= now:
                raise Unmigratable("skipped", "expired")
            record = to_record(
                decode_record(data), now, idle, absolute, expires, max_size, max_keys
            )
            if not store.create(store_key(imported_id(sid)), record):
                raise Unmigratable("failed", "already imported")
            legacy.delete(sid)
            stats.count("moved")
        except Unmigratable as exc:
            stats.count(exc.kind)
            logger.warning("a Flask-Session record was %s: %s", exc.kind, exc.reason)
        except SessionStoreUnavailable:
            raise
        except Exception as exc:  # one bad record never stops the import
            stats.count("failed")
            logger.error("importing a Flask-Session record failed: %s", exc)
        if progress is not None:
            progress(stats)
    return stats


def summary(stats: MigrationStats) -> str:
    return json.dumps({"moved": stats.moved, "skipped": stats.skipped, "failed": stats.failed})
