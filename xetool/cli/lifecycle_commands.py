"""Registry entries of the lifecycle commands (vm-start and the rest), kept apart from the
object commands because the master and host halves implement them."""

from __future__ import annotations

from xetool.cli.registry import Command

COMMANDS: tuple[Command, ...] = ()
