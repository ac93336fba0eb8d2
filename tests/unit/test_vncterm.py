"""xetool's PV console server (vncterm.py) over a pty pair, with a minimal RFB client."""

from __future__ import annotations

import os
import socket

import pytest
import struct
import threading
import time
import tty

from xetool.devices import vncauth
from xetool.backends.xen import vncterm


def psf2_font() -> bytes:
    """An 8x16 PSF2 font with a Unicode table: glyph g is solid on row g % 16 only."""
    count, height = 128, 16
    header = b"\x72\xb5\x4a\x86" + struct.pack("<7I", 0, 32, 1, count, height, height, 8)
    glyphs = b"".join(bytes(0xFF if row == g % 16 else 0 for row in range(height)) for g in range(count))
    table = b"".join(chr(g).encode() + b"\xff" for g in range(count))
    return header + glyphs + table


def test_load_psf2_and_unicode_table() -> None:
    font = vncterm.load_psf(psf2_font())
    assert (font.width, font.height, len(font.glyphs)) == (8, 16, 128)
    assert font.glyph("A")[ord("A") % 16] == 0xFF


def test_screen_text_and_escapes() -> None:
    screen = vncterm.Screen()
    screen.feed("boot\r\n\x1b[1;32mok\x1b[0m\tdone\bE")
    assert screen.text().splitlines()[:2] == ["boot", "ok      donE"]
    for i in range(40):
        screen.feed(f"line {i}\r\n")
    rows = screen.text().split("\n")
    assert rows[-2:] == ["line 39", ""] and rows[0] == "line 16"


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "server closed"
        data += chunk
    return data


def test_rfb_session_shows_console_and_types_keys() -> None:
    font = vncterm.load_psf(psf2_font())
    master, slave = os.openpty()
    tty.setraw(master)
    listener = vncterm.listen(50)
    port = listener.getsockname()[1]
    server = vncterm.VncTerm(font, slave, listener, "test console", "pa55word")
    threading.Thread(target=server.serve, daemon=True).start()

    os.write(master, b"A")  # guest output
    for wrong in ("pa55wore", None):  # a local user without the password cannot get in
        with socket.create_connection(("127.0.0.1", port), timeout=5) as bad:
            with pytest.raises(PermissionError, match="authentication failed"):
                vncauth.client_login(bad, wrong)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as none:
        assert recv_exact(none, 12) == b"RFB 003.008\n"
        none.sendall(b"RFB 003.008\n")
        assert recv_exact(none, 2) == b"\x01\x02"  # VNC Authentication only: never None
        none.sendall(b"\x01")
        assert recv_exact(none, 4) == b"\0\0\0\1"
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    init = vncauth.client_login(c, "pa55word")
    w, h = struct.unpack(">HH", init[:4])
    assert (w, h) == (640, 400)
    assert init[24:] == b"test console"

    c.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, w, h))
    assert recv_exact(c, 4) == b"\x00\x00\x00\x01"
    x, y, rw, rh, enc = struct.unpack(">HHHHi", recv_exact(c, 12))
    assert (x, y, rw, rh, enc) == (0, 0, 640, 400, 0)
    pixels = recv_exact(c, rw * rh * 4)
    # "A" at row 0, column 0: its glyph is lit on scanline ord("A") % 16 only
    lit = ord("A") % 16
    line = pixels[lit * rw * 4: lit * rw * 4 + 8 * 4]
    assert line == bytes([0xAA, 0xAA, 0xAA, 0]) * 8
    assert pixels[:32] == b"\0" * 32 or lit == 0

    # keys: "l", "s", Return -> the console (the guest's input)
    for key in (ord("l"), ord("s"), 0xFF0D):
        c.sendall(struct.pack(">BBxxI", 4, 1, key) + struct.pack(">BBxxI", 4, 0, key))
    deadline, typed = time.monotonic() + 5, b""
    while time.monotonic() < deadline and typed != b"ls\r":
        typed += os.read(master, 16)
    assert typed == b"ls\r"
    c.close()
    os.close(master)
