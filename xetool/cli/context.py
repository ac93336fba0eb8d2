"""The environment a command runs in, built once by the CLI and handed to every command.

Tests build one with a temporary state directory and string streams; nothing here is global.
"""

from __future__ import annotations

import os
import sys

from xetool import paths
from xetool.records import field, record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, TextIO

    from xetool.store.db import Store


@record
class Context:
    state: str | os.PathLike[str]  # the state directory; `state_dir` is it as a Path
    minimal: bool = False
    fmt: str = "xe"  # xe | json
    debug: bool = False
    trace: bool = False
    quiet: bool = False
    create_pool: bool = False  # set by the commands that may make a new pool (pool-import)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _store: Store | None = None

    @classmethod
    def from_options(cls, state_dir: str | None = None, **kw: Any) -> Context:
        return cls(paths.state_dir_name(state_dir), **kw)

    @property
    def state_dir(self) -> Path:
        from pathlib import Path  # not at import: see xetool.paths

        return Path(self.state)

    @property
    def store(self) -> Store:
        if self._store is None:
            from xetool.store.db import Store

            self._store = Store(self.state, create=self.create_pool)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def warn(self, text: str) -> None:
        """A note on stderr (suppressed by --quiet)."""
        if not self.quiet:
            self.err.write(f"Warning: {text}\n")

    def note(self, text: str) -> None:
        if not self.quiet:
            self.err.write(text + "\n")

    @property
    def interactive(self) -> bool:
        """True if stderr is a terminal and decoration is wanted."""
        isatty = getattr(self.err, "isatty", None)
        return bool(isatty and isatty()) and not self.quiet and self.fmt == "xe"

    @property
    def color(self) -> bool:
        return self.interactive and "NO_COLOR" not in os.environ
