"""The SQL store on real PostgreSQL 15 and MariaDB servers (started and stopped by the run):
requests per second through the test client against the cookie session and Flask-Session's
SQLAlchemy store, with where the time of a read goes (sql_read.py); the statements per request
(sql_server.py); read latency with 1,000 to 1,000,000 stored sessions and ``clear_expired``
(sql_scale.py). See benchmarks/README.md.

    python benchmarks/sql_bench.py               # the full run (about 4 minutes)
    python benchmarks/sql_bench.py --quick       # smoke check: tiny sizes, no files
    python benchmarks/sql_bench.py --profile ours-postgresql:get   # cProfile
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from flask import Flask
from harness import (
    BASELINE,
    Built,
    Goal,
    Running,
    Servers,
    Timed,
    Variant,
    compare_to_peers,
    create_app,
    evaluate_goals,
    import_or_fail,
    profile_requests,
    run_rounds,
    runnable,
    started,
    summarize,
)
from report import (
    Record,
    Section,
    arguments,
    finish,
    goal_lines,
    machine_info,
    render,
    run_main,
    skipped_section,
)
from run import peers_section, throughput_section
from scaling import EXPIRED_SESSIONS, SCALE_TOUCH_INTERVAL
from sql_read import (
    InstrumentedGet,
    breakdown_section,
    build_probes,
    no_session_probe,
    ours_memory_probe,
    summarize_breakdown,
)
from sql_scale import SCALE_SIZES, check_row_format, evaluate_scale_goals, run_scale, scale_sections
from sql_server import (
    MARIADB,
    MARIADB_SETTINGS,
    OURS_MARIADB,
    OURS_PG,
    PG,
    PG_SETTINGS,
    SQLServer,
    count_statements,
    sql_store_of,
    start_servers,
    statements_section,
)

from flask_serversession import ServerSession

ENDPOINTS = ("none", "get", "set")
FLASK_SESSION_PG = "flask-session-sqlalchemy-postgresql"
OURS_TABLE = "serversession"
FLASK_SESSION_TABLE = "sessions"
PARTS = ("testclient", "statements", "scale")
PACKAGES: tuple[str, ...] = (
    "flask",
    "werkzeug",
    "flask-serversession",
    "flask-session",
    "flask-sqlalchemy",
)
PACKAGES += ("sqlalchemy", "psycopg", "psycopg-binary", "pymysql")

# -- variants ------------------------------------------------------------------------------------


def _build_cookie(servers: Servers) -> Built:
    return Built(create_app(lambda app: None))


def _build_ours(kind: str) -> Callable[[Servers], Built]:
    def build(servers: Servers) -> Built:
        server: SQLServer = servers.require(kind)
        url = f"{server.url}?table={OURS_TABLE}"

        def configure(app: Flask) -> None:
            ServerSession(app, store=url)

        app = create_app(configure)
        store = sql_store_of(app)
        stored = functools.partial(server.count, OURS_TABLE)
        return Built(app, stored_sessions=stored, close=store.close, engine=store.engine)

    return build


def _build_flask_session_pg(servers: Servers) -> Built:
    session = import_or_fail(FLASK_SESSION_PG, "flask_session").Session
    db = import_or_fail(FLASK_SESSION_PG, "flask_sqlalchemy").SQLAlchemy()
    server: SQLServer = servers.require(PG)

    def configure(app: Flask) -> None:
        app.config.update(
            SQLALCHEMY_DATABASE_URI=server.url, SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=db
        )
        db.init_app(app)
        # Flask-Session 0.8 creates its "sessions" table here (checkfirst), in an app context.
        session(app)

    app = create_app(configure)
    with app.app_context():
        engine = db.engine
    stored = functools.partial(server.count, FLASK_SESSION_TABLE)
    return Built(app, stored_sessions=stored, close=engine.dispose, engine=engine)


VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "Flask's default signed-cookie session", _build_cookie),
    Variant(
        OURS_PG,
        f'Flask-ServerSession, store="postgresql+psycopg://...?table={OURS_TABLE}"',
        _build_ours(PG),
        (PG,),
    ),
    Variant(
        FLASK_SESSION_PG,
        'Flask-Session 0.8, SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=Flask-SQLAlchemy db'
        " on the same PostgreSQL server (psycopg 3)",
        _build_flask_session_pg,
        (PG,),
    ),
    Variant(
        OURS_MARIADB,
        f'Flask-ServerSession, store="mariadb+pymysql://...?table={OURS_TABLE}"',
        _build_ours(MARIADB),
        (MARIADB,),
    ),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}
GOALS = (Goal(OURS_PG, "get", 0.5), Goal(OURS_PG, "get", 3.0, against=FLASK_SESSION_PG))
PEERS = ((OURS_PG, FLASK_SESSION_PG),)


def run_client(runnings: Sequence[Running], servers: Servers, args: Any) -> dict[str, Any]:
    """The test-client part: the variants, the probes and ours' instrumented /get, in rounds."""
    ours = [r for r in runnings if r.name in (OURS_PG, OURS_MARIADB)]
    with ExitStack() as stack:
        probes = [no_session_probe(), ours_memory_probe()]
        for running in ours:
            probes += build_probes(running, servers.require(running.variant.needs[0]))
        for probe in probes:
            stack.callback(probe.close)
        instrumented = [InstrumentedGet(r) for r in ours]
        timed: list[Timed] = [*runnings, *probes, *instrumented]
        for item in timed:
            item.calibrate(args.seconds, args.warmup)
        order = run_rounds(timed, args.rounds, "test client: ")
    for running in runnings:
        running.verify()  # timing must not have broken anything either
    raw = {r.name: r.rates for r in runnings}
    summary = summarize(raw)
    batch: dict[str, dict[str, int]] = {r.name: dict(r.batch) for r in runnings}
    batch.update({p.name: {"calls": p.batch} for p in probes})
    return {
        "batch": batch,
        "raw": raw,
        "testclient": {
            "order": order,
            "raw_requests_per_second": raw,
            "summary": summary,
            "comparisons": compare_to_peers(raw, PEERS),
            "read_breakdown": summarize_breakdown(
                {p.name: p.us for p in probes}, {i.kind: i.rounds for i in instrumented}, summary
            ),
        },
    }


# -- the report ----------------------------------------------------------------------------------


def client_sections(client: dict[str, Any] | None, settings: dict[str, Any]) -> list[Section]:
    if not client:
        return []
    text = (
        f"{settings['rounds']} rounds of ~{settings['seconds']} s per measurement, variants"
        " interleaved (rotated each round), every response checked for 200 and the session"
        " checked before and after timing. Median req/s over the rounds, min, max; *vs"
        " cookie* is the median over the cookie session's median for the same endpoint in"
        " this run, *per round* the range of that ratio round by round, *+µs/req* the time"
        " the session adds to a request."
    )
    table = throughput_section(client["summary"], text)
    table.heading = "Requests per second through Flask's test client"
    return [
        table,
        peers_section(client["comparisons"]),
        *(breakdown_section(item) for item in client["read_breakdown"].values()),
    ]


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    packages = machine["packages"]
    server_text = "; ".join(
        f"{kind} {info['version']} ({', '.join(f'{k}={v}' for k, v in info['settings'].items())})"
        for kind, info in machine["servers"].items()
    )
    intro = [
        f"Python {machine['python']} on {machine['platform']}, {machine['cpu_count']} CPUs;"
        f" Flask {packages['flask']}, Flask-ServerSession {packages['flask-serversession']},"
        f" Flask-Session {packages['flask-session']}, Flask-SQLAlchemy"
        f" {packages['flask-sqlalchemy']}, SQLAlchemy {packages['sqlalchemy']}, psycopg"
        f" {packages['psycopg']}, PyMySQL {packages['pymysql']}.",
        f"Servers (started by the run on 127.0.0.1, same machine): {server_text}.",
        "Commits do not wait for the disk on either server (`synchronous_commit=off`,"
        " `innodb_flush_log_at_trx_commit=2`): this machine's disk is not what is measured, and"
        " it favours whichever library writes more (Flask-Session writes on every request)."
        " InnoDB's buffer pool holds the largest table (InnoDB reads past the OS page cache;"
        " PostgreSQL's 128MB shared buffers are backed by it). Method: benchmarks/README.md,"
        " *SQL benchmark*.",
        f"Load average {report['load_average_before']} before,"
        f" {report['load_average_after']} after; {report['duration_seconds']:.0f} s in all.",
    ]
    sections = [
        skipped_section(report["skipped"]),
        *client_sections(report["testclient"], report["settings"]),
        Section("Goals", notes=goal_lines(report["goals"])),
        statements_section(report["statements"]),
        *(s for kind, result in report["scale"].items() for s in scale_sections(kind, result)),
    ]
    return render(f"SQL store benchmark, {report['date']}", intro, sections, report["command"])


# -- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Any:
    parser = arguments(__doc__, rounds=7, seconds=0.4, warmup=0.3)
    default_sizes = ",".join(str(s) for s in SCALE_SIZES)
    parser.add_argument("--sizes", default=default_sizes, help=f"table sizes ({default_sizes})")
    parser.add_argument("--scale-rounds", type=int, default=5, help="scale rounds (default 5)")
    parser.add_argument("--scale-calls", type=int, default=1000, help="calls per scale measurement")
    parser.add_argument("--expired", type=int, default=EXPIRED_SESSIONS, help="expired sessions")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {', '.join(PARTS)}")
    parser.add_argument("--no-mariadb", action="store_true", help="PostgreSQL only")
    parser.add_argument("--no-mariadb-scale", action="store_true", help="no scale part on MariaDB")
    parser.add_argument("--seed", type=int, default=20261125, help="random seed of the rows")
    parser.add_argument("--profile", metavar="VARIANT:ENDPOINT", help="print a cProfile instead")
    parser.add_argument("--top", type=int, default=25, help="rows per profile listing")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 0.02, 0.01
        args.sizes, args.scale_rounds, args.scale_calls, args.expired = "100,2000", 1, 50, 500
    try:
        args.size_list = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        parser.error("--sizes wants comma-separated integers")
    if len(args.size_list) < 2 or min(args.size_list) < 1:
        parser.error("--sizes wants at least two positive sizes")
    if min(args.rounds, args.scale_rounds, args.scale_calls) < 1 or args.seconds <= 0:
        parser.error("rounds, calls and seconds must be positive")
    args.part_list = [part for part in PARTS if part in args.parts.split(",")]
    if not args.part_list or set(args.parts.split(",")) - set(PARTS):
        parser.error(f"--parts wants some of {', '.join(PARTS)}")
    name, _, endpoint = (args.profile or "").partition(":")
    if args.profile and (name not in VARIANTS_BY_NAME or endpoint not in ENDPOINTS):
        parser.error(f"--profile wants VARIANT:ENDPOINT of {', '.join(VARIANTS_BY_NAME)}")
    return args


def profile(args: Any) -> str:
    name, _, endpoint = args.profile.partition(":")
    variant = VARIANTS_BY_NAME[name]
    with ExitStack() as stack:
        servers = Servers(stack, Path(tempfile.gettempdir()))
        start_servers(servers, variant.needs)
        with started([variant], servers, [endpoint]) as (running,):
            running.calibrate(args.seconds * 5, args.warmup)
            sections = [("SQLAlchemy and driver functions", "sqlalchemy|psycopg|pymysql")]
            return profile_requests(running, endpoint, sections, args.top)


def run_parts(args: Any, servers: Servers, skipped: dict[str, str]) -> dict[str, Any]:
    # The variants of the servers this run tried to start (not MariaDB's with --no-mariadb).
    tried = {**servers.started, **servers.missing}
    variants, missing = runnable([v for v in VARIANTS if set(v.needs) <= set(tried)], servers)
    skipped.update(missing)
    results: dict[str, Any] = {"batch": {}, "raw": {}, "testclient": None, "statements": {}}
    results["variants"] = {v.name: v.description for v in variants}
    if {"testclient", "statements"} & set(args.part_list):
        with started(variants, servers, ENDPOINTS) as runnings:
            if "testclient" in args.part_list:
                results.update(run_client(runnings, servers, args))
            for running in runnings if "statements" in args.part_list else []:
                if running.built.engine is not None:
                    results["statements"][running.name] = count_statements(running, servers)
    results["scale"] = {}
    kinds = [k for k in servers.started if "scale" in args.part_list]
    for kind in kinds:
        if kind == MARIADB and args.no_mariadb_scale:
            continue
        results["scale"][kind] = run_scale(servers.started[kind], args, servers.tmp)
    for kind, reason in servers.missing.items():
        if "scale" in args.part_list:
            skipped[f"scale-{kind}"] = reason
    return results


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.profile:
        print(profile(args))
        return 0
    check_row_format()
    record = Record("sql", argv)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sql-bench-") as tmp, ExitStack() as stack:
        servers = Servers(stack, Path(tmp))
        start_servers(servers, [PG] if args.no_mariadb else [PG, MARIADB])
        results = run_parts(args, servers, skipped)
        found = {
            kind: {"version": s.version, "settings": s.settings}
            for kind, s in servers.started.items()
        }
    machine = machine_info(PACKAGES, servers=found, postgresql_arguments=PG_SETTINGS)
    machine["mariadb_arguments"] = list(MARIADB_SETTINGS)
    report = record.report(
        machine=machine,
        settings={
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "quick": args.quick,
            "variants": results["variants"],
            "endpoints": list(ENDPOINTS),
            "requests_per_measurement": results["batch"],
            "scale_sizes": args.size_list,
            "scale_rounds": args.scale_rounds,
            "scale_calls": args.scale_calls,
            "scale_touch_interval": SCALE_TOUCH_INTERVAL,
            "expired_sessions": args.expired,
            "seed": args.seed,
        },
        skipped=skipped,
        testclient=results["testclient"],
        goals=[
            *(evaluate_goals(GOALS, results["raw"], skipped) if results["raw"] else []),
            *evaluate_scale_goals(results["scale"]),
        ],
        statements=results["statements"],
        scale=results["scale"],
    )
    partial = (
        args.size_list != list(SCALE_SIZES)
        or args.no_mariadb
        or args.no_mariadb_scale
        or args.part_list != list(PARTS)
    )
    return finish(report, render_markdown(report), args.quick, "-partial" if partial else "")


if __name__ == "__main__":
    run_main(main)
