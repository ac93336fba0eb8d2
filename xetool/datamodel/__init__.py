"""The datamodel: one declaration of every class and field, read by everything else."""

from __future__ import annotations

from xetool.datamodel.classes import CLASSES
from xetool.datamodel.types import ClassSpec, Field, Kind, Qualifier
from xetool.errors import XeError

__all__ = ["CLASSES", "ClassSpec", "Field", "Kind", "Qualifier", "get_class", "cli_class_name"]


def cli_class_name(spec: ClassSpec) -> str:
    """vm_metrics -> vm-metrics: the prefix of the class's commands."""
    return spec.name.replace("_", "-")


def get_class(name: str) -> ClassSpec:
    spec = CLASSES.get(name.replace("-", "_").lower())
    if spec is None:
        raise XeError("UNKNOWN_FIELD", "class", name)
    return spec
