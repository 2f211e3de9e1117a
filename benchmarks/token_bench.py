"""API tokens against JWTs: the size of each, and what checking one costs a request.

Ours is the signed session ID that the cookie or the ``Authorization`` header carries: its
signature checked, then the session read from the store (memory; Redis when redis-server is
installed). The JWT is HS256 with typical claims (sub, iat, exp, jti, role), decoded and verified
by PyJWT (``pip install --group dev``), alone and with the Redis lookup in a revocation list that
revoking a JWT needs. Prints the Markdown tables of docs/api-tokens.md; writes no file.
"""

from __future__ import annotations

import functools
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import harness
import report
import variants
from harness import HOST, SECRET_KEY, Probe, Servers

from flask_serversession import ServerSession
from flask_serversession.ids import CookieSigner, new_session_id, store_key

jwt = variants.import_or_fail("pyjwt", "jwt")
SIGNER = CookieSigner([SECRET_KEY])


def ours(store_url: str) -> tuple[Callable[[], bool], Callable[[], None]]:
    """A check of a logged-in session's token as a request makes it, and the store's close."""
    app = harness.create_app(lambda app: ServerSession().init_app(app, store_url))
    client = app.test_client()
    harness.request_text(client, "/login")
    cookie = client.get_cookie("session")  # the very value the header transport carries
    token, store = cookie.value if cookie else "", ServerSession.store_of(app)

    def check() -> bool:
        session_id, _ = SIGNER.unsign(token)
        return session_id is not None and store.load(store_key(session_id)) is not None

    return check, store.close


def a_jwt() -> str:
    now = int(time.time())
    claims = {"sub": "user-1234567", "iat": now, "exp": now + 3600, "role": "admin"}
    return str(jwt.encode({**claims, "jti": secrets.token_hex(16)}, SECRET_KEY, "HS256"))


def probes(servers: Servers) -> list[Probe]:
    token, encoded = SIGNER.sign(new_session_id()), a_jwt()
    found = [
        Probe("ours: signature only", lambda: SIGNER.unsign(token)[0] is not None),
        Probe("ours: signature + memory store read", *ours("memory://")),
        Probe("PyJWT HS256: decode + verify", functools.partial(verify, encoded)),
    ]
    if "redis" in servers.started:
        port = servers.started["redis"]
        found.insert(2, Probe("ours: signature + Redis read", *ours(f"redis://{HOST}:{port}")))
        denylist = variants.import_or_fail("redis", "redis").Redis(host=HOST, port=port)
        revocable = functools.partial(verify, encoded, denylist)
        found.append(Probe("PyJWT HS256 + Redis revocation-list lookup", revocable, denylist.close))
    return found


def verify(encoded: str, denylist: Any = None) -> bool:
    """A JWT checked as an API checks it; with a denylist, also that it was not revoked."""
    claims = jwt.decode(encoded, SECRET_KEY, algorithms=["HS256"])
    return "role" in claims and not (denylist and denylist.exists("revoked:" + claims["jti"]))


def main() -> None:
    quick = {"rounds": 1, "seconds": 0.02}  # the command line every benchmark shares
    args = report.parse(__doc__, sys.argv[1:], rounds=9, seconds=0.3, quick=quick)
    with ExitStack() as stack:
        servers = Servers(stack, Path(stack.enter_context(tempfile.TemporaryDirectory())))
        variants.start_servers(servers, ["redis"])
        timed = probes(servers)
        for probe in timed:
            stack.callback(probe.close)
            probe.calibrate(args.seconds, warmup=args.seconds)
        harness.run_rounds(timed, args.rounds)
    print("| token | characters | `Authorization` header, bytes |\n|---|---:|---:|")
    for name, value in (("ours", SIGNER.sign(new_session_id())), ("JWT, 5 claims", a_jwt())):
        print(f"| {name} | {len(value)} | {len(f'Authorization: Bearer {value}')} |")
    print(f"\n| check per request ({args.rounds} rounds) | µs, median | min–max |\n|---|---:|---:|")
    for name, us in ((probe.name, sorted(probe.us)) for probe in timed):
        print(f"| {name} | {statistics.median(us):.1f} | {us[0]:.1f}–{us[-1]:.1f} |")


if __name__ == "__main__":
    main()
