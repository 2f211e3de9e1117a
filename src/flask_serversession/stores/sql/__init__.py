"""PostgreSQL and MySQL/MariaDB through SQLAlchemy Core: sessions in one table of your database.

.. versionadded:: 0.1

Three ways to build one:

* From a URL (``SESSION_STORE = "postgresql+psycopg://user:pw@db.example/app"``): the store
  makes and owns its engine, tuned for it: autocommit (one round trip per statement, no
  ``BEGIN``/``COMMIT``), ``utf8mb4`` on MySQL.
* From an :class:`~sqlalchemy.engine.Engine` you already have:
  ``SQLStore(engine, table="sessions", schema="web")``. The store borrows it and never
  disposes of it. On PostgreSQL its connections are switched to autocommit while the store
  holds them (free with psycopg); on MySQL each statement runs in a transaction of its own,
  which adds the ``COMMIT`` and the pool's reset ``ROLLBACK``. An engine made with
  ``isolation_level="AUTOCOMMIT"`` is used as is.
* From Flask-SQLAlchemy: ``SQLStore.from_flask_sqlalchemy(db, app=app)`` (or inside an app
  context), optionally with a ``bind_key``. The table joins ``db``'s metadata, so
  ``db.create_all()`` and Flask-Migrate/Alembic see it instead of proposing to drop it.

URL forms: ``postgresql://``, ``postgresql+psycopg://``, ``postgresql+psycopg2://``,
``postgresql+pg8000://``, ``mysql+pymysql://``, ``mysql+mysqldb://``, ``mariadb://``,
``mariadb+pymysql://``, ``mariadb+mariadbconnector://``: SQLAlchemy's URLs, whose driver must be
installed (``pip install 'flask-serversession[sql]'`` brings SQLAlchemy; add psycopg or PyMySQL).
Query-string options of the store itself:

``table``
    The table's name (default ``serversession``; letters, digits, ``_``, at most 48).
``schema``
    The schema (PostgreSQL) or database (MySQL) of the table; default: the connection's.
``create_table``
    ``true`` (default): create the table and its indexes on first use if missing, safely when
    several processes start at once (or call :meth:`SQLStore.create_schema` at start-up to fail
    early). ``false``: you own the schema (Alembic).
``pool_size``, ``max_overflow``, ``pool_timeout``, ``pool_recycle``, ``pool_pre_ping``
    Passed to :func:`sqlalchemy.create_engine`. ``pool_pre_ping`` is off by default: a
    statement that finds its pooled connection dropped by a restarted server is retried once
    on a fresh connection (SQLAlchemy invalidates the whole pool on a disconnect), which picks
    up the restart without a failed request and without pre-ping's extra round trip per store
    call. Turn it on for connections that middleboxes drop silently.

Every other query parameter must be a connection parameter the driver knows (``sslmode``,
``connect_timeout``, ``charset``...): it is passed to the driver as SQLAlchemy does. Anything else
is a :class:`~flask_serversession.errors.ConfigurationError`, so a typo never goes unnoticed.
The password never appears in :attr:`SQLStore.name`, logs or error messages.

The table (see :func:`session_table`)::

    key               VARCHAR(64) PRIMARY KEY   hash of the session ID (never the ID itself);
                                                ascii_bin on MySQL: compared byte for byte
    data              JSONB (PostgreSQL) / LONGTEXT (MySQL): {"name": "<serialized value>"}
    created           DOUBLE    POSIX seconds, from the caller's clock like every time here
    last_seen         DOUBLE
    expires           DOUBLE    idle expiry, never after absolute_expires; indexed for cleanup
    absolute_expires  DOUBLE
    user_id           VARCHAR(255) NULL, indexed
    ended             BOOLEAN   a tombstone: the session was ended on purpose
    version           INTEGER   bumped by every patch
    info              TEXT NULL client metadata kept at login (JSON text, opaque here)
    keys_at_most      BIGINT NULL   upper bounds of the number of values and their bytes,
    bytes_at_most     BIGINT NULL   trusted while bounds_version = version (see .bounds);
    bounds_version    INTEGER NULL  added on start-up to a table made before them

Times are POSIX timestamps: absolute instants, the same in every time zone, compared exactly
with the floats of the store contract, and free of MySQL's ``TIMESTAMP`` 2038 limit and of
session-time-zone conversions. In SQL, ``to_timestamp(expires)`` (PostgreSQL) or
``FROM_UNIXTIME(expires)`` (MySQL) shows them as dates.

``data`` is LONGTEXT on MySQL and MariaDB rather than ``JSON``: MariaDB's ``JSON`` is LONGTEXT
with a ``JSON_VALID`` check that would parse the whole document again on every write, MySQL's
binary JSON gains nothing for a merge of top-level names, and one definition serves both. The
store checks what it reads (:class:`~flask_serversession.errors.SessionDataCorrupt`).

On PostgreSQL 14 and later the store sets ``data``'s compression to lz4 (``ALTER TABLE ...
ALTER COLUMN data SET COMPRESSION lz4``, once per table, at start-up, waiting at most 2 s for
its lock). A session over about 2 KB is compressed, and every patch rewrites its whole JSONB
document; with PostgreSQL's default, pglz, a patch to a 10 KB session took about 70 µs more
server time than one to a small session, with lz4 about 20 µs. Values already stored keep their
compression until their session is next written. A database user who may not alter the table,
or a server built without lz4, keeps pglz; the log says so once per start.

Alembic: call :func:`session_table` on your migration's ``target_metadata`` and build the store
with ``create_table=False``; autogenerate then writes the table's migration like any other. The
store then changes nothing in the table; add ``op.execute("ALTER TABLE serversession ALTER COLUMN
data SET COMPRESSION lz4")`` to the migration on PostgreSQL for the faster writes.

Per operation, one statement: ``load`` is one plain ``SELECT`` (the rate-limited touch, when the
row read shows it due, is a second statement, an ``UPDATE`` that re-checks the row is still live
and due); ``patch`` is one ``UPDATE`` that merges
only the changed names into the stored object (``(data || changes) - deleted`` on PostgreSQL,
``JSON_MERGE_PATCH`` on MySQL), so concurrent patches of different names all land, and it matches
only a live record, so nothing ended or expired is ever re-created. A patch with a size or
key-count limit also matches only if the merged object fits it: the ``WHERE`` tests the kept
bounds first (:mod:`.bounds`), and only when they are not trusted or would pass a limit counts
the merged object's values or sums the byte lengths of its names and values (``jsonb_each_text``
on PostgreSQL; ``JSON_TABLE`` over ``JSON_KEYS`` and over ``JSON_EXTRACT(..., '$.*')`` on MySQL),
so a write to a large session costs about what it costs on a small one. Moving a session to a new ID
is one transaction: the ``UPDATE`` and the tombstone left under the old key. ``clear_expired``
deletes in batches, each its own short transaction.

The package: :mod:`.store` holds :class:`SQLStore`, one class for both dialects; what differs
between them (statements, JSON functions, upserts) lives in :mod:`.postgresql` and :mod:`.mysql`,
what they share (the table, URL options, the engine a URL makes, driver errors) in :mod:`.common`,
how a patch checks the limits in :mod:`.bounds`. A
session read skips SQLAlchemy's per-statement work and goes through the driver's cursor, unless
the engine has cursor events or ``echo`` on (:mod:`.direct`).

Driver errors (connection refused, a server restart, a pool timeout) become
:class:`~flask_serversession.errors.SessionStoreUnavailable`; a deadlock or a serialization
failure is retried twice first.
"""

from __future__ import annotations

from .common import session_table
from .store import SQLStore

__all__ = ["SQLStore", "session_table"]
