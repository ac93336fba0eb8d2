"""xetool: an xe-style toolstack for Xen pools."""

__version__ = "0.1.0"
