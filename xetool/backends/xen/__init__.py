"""The real Xen backend: `xl` (libxl/libxenguest) on a Xen dom0. See backend.py."""

from __future__ import annotations

from xetool.backends.xen.backend import XenBackend

__all__ = ["XenBackend"]
