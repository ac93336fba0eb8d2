"""xetool's PV console server: a guest's text console exported over VNC (RFB 3.8) on 127.0.0.1.

XenServer's vncterm does this job; Debian ships no vncterm, so this is xetool's own. It reads the
pty that xenconsoled made for the guest's console (``/local/domain/N/console/tty``), keeps an
80x25 text screen, draws it with a PSF console font (Debian: console-setup-linux's
/usr/share/consolefonts) and serves it to local VNC clients that give the console's password
(VNC Authentication, --password-file: 127.0.0.1 is open to every local user, so without it any of
them could type into the guest; see xetool/devices/vncauth.py), whose keys go to the console. It listens on the first free port from 5900+display and writes that port to
``/local/domain/N/console/vnc-port`` (and its pid to ``/local/domain/N/vncterm-pid``).

    python3 -m xetool.backends.xen.vncterm --domid N --password-file PATH [--display 1] [--font PATH] [--tty PATH]

Escape sequences are dropped, not interpreted: it shows a boot log and a shell prompt, it is not a
terminal emulator.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import os
import select
import socket
import struct
import sys
import termios
import time
import tty as ttymod

from xetool.devices import vncauth
from xetool.devices.vncauth import VNC_AUTH
from xetool.records import field, record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Literal

COLS, ROWS = 80, 25
FONT_GLOBS = (
    "/usr/share/consolefonts/Lat15-Fixed16.psf.gz",
    "/usr/share/consolefonts/Uni2-Fixed16.psf.gz",
    "/usr/share/consolefonts/*16.psf*",
    "/usr/share/kbd/consolefonts/*16.psf*",
)
FG, BG = (0xAA, 0xAA, 0xAA), (0, 0, 0)
KEYSYMS = {0xFF0D: b"\r", 0xFF08: b"\x7f", 0xFF09: b"\t", 0xFF1B: b"\x1b", 0xFF8D: b"\r",
           0xFF51: b"\x1b[D", 0xFF52: b"\x1b[A", 0xFF53: b"\x1b[C", 0xFF54: b"\x1b[B", 0xFFFF: b"\x1b[3~"}
CTRL_KEYS = (0xFFE3, 0xFFE4)


@record
class Font:
    width: int
    height: int
    glyphs: list[bytes]  # per glyph: height rows of ceil(width/8) bytes
    index: dict[int, int]  # code point -> glyph number

    def glyph(self, char: str) -> bytes:
        n = self.index.get(ord(char), self.index.get(ord("?"), 0))
        return self.glyphs[n]


def load_psf(data: bytes) -> Font:
    """A PSF1 or PSF2 console font (possibly gzipped), with its Unicode table if any."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:2] == b"\x36\x04":
        mode, height = data[2], data[3]
        count, width, off, has_table = (512 if mode & 1 else 256), 8, 4, bool(mode & 6)
        size = height
    elif data[:4] == b"\x72\xb5\x4a\x86":
        _v, off, flags, count, size, height, width = struct.unpack_from("<7I", data, 4)
        has_table = bool(flags & 1)
    else:
        raise ValueError("not a PSF font")
    glyphs = [data[off + i * size: off + (i + 1) * size] for i in range(count)]
    index: dict[int, int] = {}
    table = data[off + count * size:]
    if has_table and data[:2] == b"\x36\x04":
        g, i = 0, 0
        while i + 1 < len(table) and g < count:
            (cp,) = struct.unpack_from("<H", table, i)
            i += 2
            if cp == 0xFFFF:
                g += 1
            elif cp != 0xFFFE:
                index.setdefault(cp, g)
    elif has_table:
        for g, entry in enumerate(table.split(b"\xff")[:count]):
            for ch in entry.split(b"\xfe")[0].decode("utf-8", "replace"):
                index.setdefault(ord(ch), g)
    if not index:
        index = {i: i for i in range(count)}
    return Font(width, height, glyphs, index)


def find_font(explicit: str | None) -> Font:
    paths = [explicit] if explicit else [p for pattern in FONT_GLOBS for p in sorted(glob.glob(pattern))]
    for path in paths:
        try:
            with open(path, "rb") as f:
                return load_psf(f.read())
        except (OSError, ValueError):
            continue
    raise SystemExit("vncterm: no PSF console font (install console-setup-linux, or pass --font)")


@record
class Screen:
    """The text screen: printable characters, CR, LF, BS, TAB; escape sequences dropped."""

    cells: list[list[str]] = field(default_factory=lambda: [[" "] * COLS for _ in range(ROWS)])
    row: int = 0
    col: int = 0
    dirty: set[int] = field(default_factory=lambda: set(range(ROWS)))
    _esc: str = ""

    def feed(self, text: str) -> None:
        for ch in text:
            if self._esc:
                self._esc += ch
                if (len(self._esc) == 2 and ch != "[") or (len(self._esc) > 2 and "@" <= ch <= "~"):
                    self._esc = ""
                continue
            if ch == "\x1b":
                self._esc = ch
            elif ch == "\r":
                self.col = 0
            elif ch == "\n":
                self._newline()
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch == "\t":
                for _ in range(8 - self.col % 8):
                    self._put(" ")
            elif ch >= " ":
                self._put(ch)

    def _put(self, ch: str) -> None:
        if self.col >= COLS:
            self.col = 0
            self._newline()
        self.cells[self.row][self.col] = ch
        self.dirty.add(self.row)
        self.col += 1

    def _newline(self) -> None:
        if self.row == ROWS - 1:
            self.cells = self.cells[1:] + [[" "] * COLS]
            self.dirty = set(range(ROWS))
        else:
            self.row += 1

    def text(self) -> str:
        return "\n".join("".join(r).rstrip() for r in self.cells)


class PixelFormat:
    """The client's true-colour pixel format; the server draws in two colours only."""

    def __init__(self, raw: bytes) -> None:
        values: tuple[int, ...] = struct.unpack(">BBBBHHHBBB", raw[:13])
        bpp, _depth, big, _true, rmax, gmax, bmax, rs, gs, bs = values
        self.raw, self.bytes = raw, bpp // 8
        order: Literal["big", "little"] = "big" if big else "little"

        def pixel(rgb: tuple[int, int, int]) -> bytes:
            r, g, b = (c * m // 255 for c, m in zip(rgb, (rmax, gmax, bmax)))
            return ((r << rs) | (g << gs) | (b << bs)).to_bytes(self.bytes, order)

        self.fg, self.bg = pixel(FG), pixel(BG)


DEFAULT_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf, self.stage = sock, b"", "version"
        self.version = b""
        self.challenge = b""
        self.fmt = PixelFormat(DEFAULT_FORMAT)
        self.wants_update = False
        self.full = True
        self.ctrl = False
        self.cache: dict[tuple[str, int], bytes] = {}


class VncTerm:
    def __init__(self, font: Font, pty_fd: int, listener: socket.socket, name: str, password: str | None = None) -> None:
        self.font, self.pty, self.listener, self.name = font, pty_fd, listener, name
        self.password = password  # None: no authentication (tests of the drawing only)
        self.screen = Screen()
        self.clients: list[Client] = []
        self.width, self.height = COLS * font.width, ROWS * font.height

    def serve(self) -> None:
        while True:
            fds: list[socket.socket | int] = [self.listener, self.pty, *(c.sock for c in self.clients)]
            ready, _, _ = select.select(fds, [], [], 1.0)
            for fd in ready:
                if fd is self.listener:
                    sock, _ = self.listener.accept()
                    sock.sendall(b"RFB 003.008\n")
                    self.clients.append(Client(sock))
                elif fd == self.pty:
                    try:
                        data = os.read(self.pty, 4096)
                    except OSError:
                        data = b""
                    if not data:  # the console went away: the domain is gone
                        return
                    self.screen.feed(data.decode("utf-8", "replace"))
                else:
                    self._client_input(next(c for c in self.clients if c.sock is fd))
            dirty = set(self.screen.dirty)
            self.screen.dirty.clear()
            for c in list(self.clients):
                if c.wants_update and (c.full or dirty):
                    self._send_update(c, set(range(ROWS)) if c.full else dirty)

    def _drop(self, c: Client) -> None:
        self.clients.remove(c)
        c.sock.close()

    def _client_input(self, c: Client) -> None:
        try:
            data = c.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            return self._drop(c)
        c.buf += data
        while self._handle(c):
            pass

    def _take(self, c: Client, n: int) -> bytes | None:
        if len(c.buf) < n:
            return None
        out, c.buf = c.buf[:n], c.buf[n:]
        return out

    def _handle(self, c: Client) -> bool:
        """One client message from the buffer; False when more bytes are needed."""
        if c.stage == "version":
            version = self._take(c, 12)
            if version is None:
                return False
            if not version.startswith(b"RFB 003.") or version < b"RFB 003.007":
                self._drop(c)  # 3.3 clients are not served: every client in use speaks 3.7 or 3.8
                return False
            c.version = version
            kind = VNC_AUTH if self.password is not None else 1
            c.sock.sendall(bytes([1, kind]))  # one security type
            c.stage = "security"
            return True
        if c.stage == "security":
            choice = self._take(c, 1)
            if choice is None:
                return False
            if self.password is None and choice == b"\x01":
                c.sock.sendall(struct.pack(">I", 0) if c.version >= b"RFB 003.008" else b"")
                c.stage = "init"
            elif self.password is not None and choice == bytes([VNC_AUTH]):
                c.challenge = vncauth.challenge()
                c.sock.sendall(c.challenge)
                c.stage = "auth"
            else:
                self._refuse(c, b"unsupported security type")
                return False
            return True
        if c.stage == "auth":
            answer = self._take(c, 16)
            if answer is None:
                return False
            if not vncauth.check(self.password or "", c.challenge, answer):
                self._refuse(c, b"authentication failed")
                return False
            c.sock.sendall(struct.pack(">I", 0))
            c.stage = "init"
            return True
        if c.stage == "init":
            if self._take(c, 1) is None:
                return False
            name = self.name.encode()
            c.sock.sendall(struct.pack(">HH", self.width, self.height) + DEFAULT_FORMAT + struct.pack(">I", len(name)) + name)
            c.stage = "normal"
            return True
        if not c.buf:
            return False
        kind = c.buf[0]
        sizes = {0: 20, 3: 10, 4: 8, 5: 6}
        if kind in sizes:
            msg = self._take(c, sizes[kind])
            if msg is None:
                return False
            if kind == 0:
                c.fmt, c.cache, c.full = PixelFormat(msg[4:20]), {}, True
            elif kind == 3:
                c.wants_update = True
                c.full = c.full or msg[1] == 0
            elif kind == 4:
                self._key(c, bool(msg[1]), struct.unpack(">I", msg[4:8])[0])
            return True
        if kind == 2:
            if len(c.buf) < 4:
                return False
            (count,) = struct.unpack(">H", c.buf[2:4])
            return self._take(c, 4 + 4 * count) is not None
        if kind == 6:
            if len(c.buf) < 8:
                return False
            (length,) = struct.unpack(">I", c.buf[4:8])
            return self._take(c, 8 + length) is not None
        self._drop(c)  # an unknown message: the stream cannot be followed any further
        return False

    def _refuse(self, c: Client, reason: bytes) -> None:
        """SecurityResult failed (with the reason in RFB 3.8), then the connection is closed."""
        extra = struct.pack(">I", len(reason)) + reason if c.version >= b"RFB 003.008" else b""
        try:
            c.sock.sendall(struct.pack(">I", 1) + extra)
        except OSError:
            pass
        self._drop(c)

    def _key(self, c: Client, down: bool, key: int) -> None:
        if key in CTRL_KEYS:
            c.ctrl = down
            return
        if not down:
            return
        if key in KEYSYMS:
            data = KEYSYMS[key]
        elif 0x20 <= key <= 0x7E:
            data = bytes([key & 0x1F]) if c.ctrl and chr(key).isalpha() else bytes([key])
        else:
            return
        os.write(self.pty, data)

    def _scanline(self, c: Client, row: int, line: int) -> bytes:
        parts = []
        for ch in self.screen.cells[row]:
            key = (ch, line)
            px = c.cache.get(key)
            if px is None:
                bits = self.font.glyph(ch)[line * ((self.font.width + 7) // 8)]
                px = b"".join(c.fmt.fg if bits & (0x80 >> x) else c.fmt.bg for x in range(self.font.width))
                c.cache[key] = px
            parts.append(px)
        return b"".join(parts)

    def _send_update(self, c: Client, rows: set[int]) -> None:
        first, last = min(rows), max(rows)
        h = self.font.height
        body = b"".join(self._scanline(c, r, y) for r in range(first, last + 1) for y in range(h))
        header = struct.pack(">BxH", 0, 1) + struct.pack(">HHHHi", 0, first * h, self.width, (last - first + 1) * h, 0)
        try:
            c.sock.sendall(header + body)
        except OSError:
            return self._drop(c)
        c.wants_update, c.full = False, False


def listen(display: int) -> socket.socket:
    for n in range(display, display + 100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", 5900 + n))
        except OSError:
            s.close()
            continue
        s.listen(4)
        return s
    raise SystemExit(f"vncterm: no free VNC port from {5900 + display}")


def xenstore(socket_path: str) -> Any:  # a pyxs Client (pyxs has no types)
    from pyxs import Client as XsClient

    return XsClient(unix_socket_path=socket_path)


def console_tty(domid: int, socket_path: str, wait_s: float) -> str:
    """xenconsoled fills in console/tty shortly after the console is set up."""
    path = f"/local/domain/{domid}/console/tty".encode()
    deadline = time.monotonic() + wait_s
    with xenstore(socket_path) as xs:
        while time.monotonic() < deadline:
            value: bytes = xs.read(path, b"")
            if value:
                return value.decode()
            time.sleep(0.2)
    raise SystemExit(f"vncterm: no {path.decode()} after {wait_s:g}s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="xetool-vncterm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--domid", type=int, required=True)
    ap.add_argument("--display", type=int, default=1, help="first VNC display to try (port 5900+N)")
    ap.add_argument("--xenstore-socket", default="/run/xenstored/socket")
    ap.add_argument("--font", help="a PSF font (default: the first console font found)")
    ap.add_argument("--tty", help="the console pty (default: console/tty in xenstore)")
    ap.add_argument("--password-file", required=True,
                    help="the console's password, which every VNC client must give (VNC Authentication)")
    args = ap.parse_args(argv)
    try:
        password = vncauth.read_password(args.password_file)
    except OSError as e:
        raise SystemExit(f"vncterm: cannot read the console password: {e}") from None
    font = find_font(args.font)
    pty_path = args.tty or console_tty(args.domid, args.xenstore_socket, 10.0)
    fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY)
    if os.isatty(fd):
        ttymod.setraw(fd, termios.TCSANOW)
    listener = listen(args.display)
    port = listener.getsockname()[1]
    if not args.tty:
        with xenstore(args.xenstore_socket) as xs:
            xs.write(f"/local/domain/{args.domid}/console/vnc-port".encode(), str(port).encode())
            xs.write(f"/local/domain/{args.domid}/vncterm-pid".encode(), str(os.getpid()).encode())
    print(f"vncterm: domain {args.domid} console {pty_path} on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    VncTerm(font, fd, listener, f"domain {args.domid} console", password).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
