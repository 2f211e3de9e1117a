"""The reasons ``session_rejected`` gives for one app, recorded for a test to check."""

from __future__ import annotations

from typing import Any

from flask import Flask

from flask_serversession import session_rejected


def rejections(app: Flask) -> list[str]:
    """A list that fills with the ``reason`` of every ``session_rejected`` ``app`` sends."""
    reasons: list[str] = []

    def record(sender: Flask, reason: str, **extra: Any) -> None:
        reasons.append(reason)

    session_rejected.connect(record, app, weak=False)
    return reasons
