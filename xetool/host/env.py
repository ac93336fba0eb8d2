"""The settings the host half reads (fault plan, timeouts), carried in every request.

The master reads them once from its environment (`from_master`) and puts them in the request;
the host half reads them through `get`, which sees the request's values while a call runs. sshd
does not pass the caller's environment to a remote agent, so reading os.environ deep down would
silently stop faults and timeouts from reaching a host on another machine.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

# fault injection (steps.py), the memory broker's wait for a guest's balloon, a device's hotplug,
# a device model's or console server's start
SETTINGS = ("XETOOL_FIST", "XETOOL_BALLOON_TIMEOUT", "XETOOL_HOTPLUG_TIMEOUT", "XETOOL_DM_TIMEOUT")

_current: ContextVar[dict[str, str] | None] = ContextVar("xetool_host_env", default=None)


def from_master() -> dict[str, str]:
    """The settings of this process, for a request."""
    return {k: os.environ[k] for k in SETTINGS if k in os.environ}


def get(name: str, default: str | None = None) -> str | None:
    """A setting: the running request's, else (outside any request) this process's own."""
    env = _current.get()
    if env is not None:
        return env.get(name, default)
    return os.environ.get(name, default)


@contextmanager
def applied(env: Mapping[str, str]) -> Iterator[None]:
    """Run a request with its settings (and only them: the host's own environment has none)."""
    token = _current.set({k: str(v) for k, v in env.items() if k in SETTINGS})
    try:
        yield
    finally:
        _current.reset(token)
