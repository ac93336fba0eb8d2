"""Timestamps as the datamodel keeps them: ISO 8601, UTC, to the second."""

from __future__ import annotations

import time


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
