"""A small JSON API on the header transport, run as a server process of its own (a "worker").

``python header_worker.py PORT`` serves it on 127.0.0.1:PORT with werkzeug's threaded server;
``flask --app header_worker:create_app sessions ...`` is its CLI. The store and secret come
from ``WORKER_STORE`` and ``WORKER_SECRET``, so every worker and the CLI share one store.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from flask import Flask
from werkzeug.serving import make_server

from flask_serversession import ServerSession, current_session


def create_app(store: str | None = None, secret: str | None = None) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret or os.environ["WORKER_SECRET"]
    ServerSession(
        app,
        store=store or os.environ["WORKER_STORE"],
        transport="header",
        cleanup_interval=0,
    )

    @app.post("/login/<user>")
    def login(user: str) -> dict[str, Any]:
        current_session().login(user)
        return {"user": user}

    @app.get("/me")
    def me() -> tuple[dict[str, Any], int]:
        session = current_session()
        if session.user_id is None:
            return {"error": "log in first"}, 401
        return {"user": session.user_id, "handle": session.handle}, 200

    return app


if __name__ == "__main__":
    server = make_server("127.0.0.1", int(sys.argv[1]), create_app(), threaded=True)
    server.serve_forever()
