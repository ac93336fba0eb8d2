"""Long operations show their current step on a terminal, and nothing decorative elsewhere
(issue 6): vm-start and vm-shutdown through a real pseudo-terminal, then through pipes."""

from __future__ import annotations

import subprocess
import sys

import pexpect

from conftest import Pool, cli_env


def _on_a_terminal(pool: Pool, *args: str, **env: str) -> str:
    child = pexpect.spawn(sys.executable, ["-m", "xetool", *args], env=cli_env(pool.state_dir, **env),
                          encoding="utf-8", timeout=60, dimensions=(24, 120))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return child.before


def test_vm_start_and_shutdown_show_their_steps_on_a_terminal_only(pool: Pool) -> None:
    shown = _on_a_terminal(pool, "vm-start", "vm=web01")
    assert "Starting web01" in shown and "create_domain" in shown  # a named step was on screen
    shown = _on_a_terminal(pool, "vm-shutdown", "vm=web01")
    assert "Shutting down web01" in shown
    piped = subprocess.run([sys.executable, "-m", "xetool", "vm-start", "vm=web01"], env=cli_env(pool.state_dir),
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stdout == "" and piped.stderr == ""
    shown = _on_a_terminal(pool, "vm-shutdown", "vm=web01", "--quiet")
    assert "Shutting down" not in shown  # --quiet: nothing decorative even on a terminal
