"""The telemetry inbox: chunk files of packets as a ground station delivers them.

Layout of an inbox folder::

    <inbox>/TM_RRRR_NNNNNN.pkt            chunks waiting, RRRR revolution, NNNNNN chunk number
    <inbox>/done/TM_RRRR_NNNNNN.pkt       chunks processed
    <inbox>/quarantine/TM_RRRR_NNNNNN.pkt chunks that were damaged ...
    <inbox>/quarantine/TM_RRRR_NNNNNN.pkt.reason.json   ... and why

A chunk file is a 16-byte header then whole packets (layout in docs/telemetry.md):

    0  6  magic b'ISDCTM'
    6  1  format version (1)
    7  1  spare, 0
    8  2  packet size in bytes (uint16, big-endian)
    10 4  number of packets (uint32, big-endian)
    14 2  CRC-16-CCITT of bytes 0..13

Chunks are written atomically (temporary dot-file beside the target, then `os.replace`),
so a reader never sees half a chunk; arrival order is the chunk number order. Only names
matching `TM_[0-9]{4}_[0-9]{6}.pkt` are ever turned into paths (no '/', no '..'); anything
else in the folder is ignored with a warning, and symlinks are never followed.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isdc.dal.atomic import atomic_write_bytes, fsync_dir
from isdc.ids import IdError, Revolution
from isdc.telemetry.packets import PACKET_SIZE, crc16_ccitt, split_packets

log = logging.getLogger(__name__)

__all__ = [
    "InboxError",
    "ChunkName",
    "Chunk",
    "CHUNK_MAGIC",
    "CHUNK_HEADER_SIZE",
    "encode_chunk",
    "decode_chunk",
    "Inbox",
]

CHUNK_MAGIC = b"ISDCTM"
CHUNK_FORMAT = 1
CHUNK_HEADER_SIZE = 16
_HEADER = np.dtype([("magic", "S6"), ("format", "u1"), ("spare", "u1"), ("psize", ">u2"), ("count", ">u4"),
                    ("crc", ">u2")])
_NAME = re.compile(r"TM_([0-9]{4})_([0-9]{6})\.pkt")
_MAX_NUMBER = 999_999


class InboxError(Exception):
    """A chunk name that does not follow the pattern, or an inbox that cannot be used."""


@dataclass(frozen=True, order=True)
class ChunkName:
    """The name of a chunk file: `TM_RRRR_NNNNNN.pkt` (revolution, chunk number in it)."""

    revolution: Revolution
    number: int

    def __post_init__(self):
        if not isinstance(self.revolution, Revolution):
            object.__setattr__(self, "revolution", Revolution.parse(self.revolution))
        if not isinstance(self.number, int) or isinstance(self.number, bool) or not 0 <= self.number <= _MAX_NUMBER:
            raise InboxError(f"chunk number must be an integer 0..{_MAX_NUMBER}, got {self.number!r}")

    @classmethod
    def parse(cls, name: str) -> "ChunkName":
        """Parse `TM_RRRR_NNNNNN.pkt`; InboxError for anything else (paths, '..', other files)."""
        m = _NAME.fullmatch(name) if isinstance(name, str) else None
        if not m:
            shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:60] + "..."
            raise InboxError(f"not a chunk name: {shown}; expected TM_RRRR_NNNNNN.pkt")
        return cls(Revolution(int(m.group(1))), int(m.group(2)))

    def __str__(self) -> str:
        return f"TM_{self.revolution}_{self.number:06d}.pkt"


def encode_chunk(packets) -> bytes:
    """Header + packets: `packets` is a (n, PACKET_SIZE) uint8 array or their concatenated bytes."""
    p, tail = split_packets(packets if isinstance(packets, (bytes, bytearray, memoryview))
                            else np.ascontiguousarray(packets, dtype=np.uint8).ravel())
    if tail:
        raise InboxError(f"packets are not a whole number of {PACKET_SIZE}-byte packets ({tail} bytes left over)")
    h = np.zeros(1, _HEADER)
    h["magic"], h["format"], h["psize"], h["count"] = CHUNK_MAGIC, CHUNK_FORMAT, PACKET_SIZE, p.shape[0]
    raw = h.tobytes()
    h["crc"] = crc16_ccitt(raw[:14])
    return h.tobytes() + p.tobytes()


@dataclass(frozen=True)
class Chunk:
    """A chunk read from the inbox.

    data : the packet bytes present (whole packets, then possibly a partial one when the
    file is truncated: `isdc.telemetry.reassembly.Reassembler.add` records it); announced :
    packets the header announces (None if the header is unreadable); problem : why the
    chunk is damaged (None if whole). A damaged chunk's whole packets are still usable.
    """

    name: ChunkName
    data: bytes
    announced: int | None
    problem: str | None

    @property
    def packets(self) -> np.ndarray:
        """The whole packets, (n, PACKET_SIZE) uint8."""
        return split_packets(self.data)[0]


def decode_chunk(raw: bytes, name: ChunkName | str = "chunk") -> tuple[bytes, int | None, str | None]:
    """(packet bytes, packets announced, problem or None) of a chunk file's content."""
    if len(raw) < CHUNK_HEADER_SIZE:
        return b"", None, f"{name}: {len(raw)} bytes, shorter than the {CHUNK_HEADER_SIZE}-byte chunk header"
    h = np.frombuffer(raw[:CHUNK_HEADER_SIZE], _HEADER)[0]
    if bytes(h["magic"]) != CHUNK_MAGIC:
        return b"", None, f"{name}: not a telemetry chunk (magic {bytes(h['magic'])!r})"
    if crc16_ccitt(raw[:14]) != int(h["crc"]):
        return b"", None, f"{name}: chunk header CRC mismatch"
    if int(h["format"]) != CHUNK_FORMAT or int(h["psize"]) != PACKET_SIZE:
        return b"", None, (f"{name}: chunk format {int(h['format'])} with {int(h['psize'])}-byte packets; "
                           f"this code reads format {CHUNK_FORMAT}, {PACKET_SIZE}-byte packets")
    n = int(h["count"])
    body = raw[CHUNK_HEADER_SIZE:]
    want = n * PACKET_SIZE
    if len(body) < want:
        return body, n, (f"{name}: truncated: header announces {n} packets ({want} bytes), the file has "
                         f"{len(body)} bytes of packets")
    if len(body) > want:
        return body[:want], n, f"{name}: {len(body) - want} bytes after the {n} packets the header announces"
    return body, n, None


class Inbox:
    """An inbox folder with its `done/` and `quarantine/` subfolders (created if missing)."""

    def __init__(self, root: str | os.PathLike, create: bool = True):
        self.root = Path(root).expanduser().resolve()
        self.done_dir = self.root / "done"
        self.quarantine_dir = self.root / "quarantine"
        if create:
            for d in (self.root, self.done_dir, self.quarantine_dir):
                d.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise InboxError(f"inbox {self.root} does not exist")

    def __repr__(self):
        return f"Inbox({str(self.root)!r})"

    def path(self, name: ChunkName, where: str = "") -> Path:
        """Path of a chunk in the inbox ('' ), 'done' or 'quarantine'; only from a ChunkName."""
        if not isinstance(name, ChunkName):
            raise TypeError(f"chunk name must be a ChunkName (parse text with ChunkName.parse), got {name!r}")
        folder = {"": self.root, "done": self.done_dir, "quarantine": self.quarantine_dir}[where]
        return folder / str(name)

    # ---- writing (the ground station / the feed)
    def write(self, name: ChunkName, data: bytes, durable: bool = True) -> Path:
        """Put a chunk into the inbox atomically; InboxError if that name was already used."""
        for where in ("", "done", "quarantine"):
            if self.path(name, where).exists():
                raise InboxError(f"{self.root}: chunk {name} already exists in {where or 'the inbox'}")
        return atomic_write_bytes(self.path(name), bytes(data), durable=durable)

    def next_name(self, revolution: Revolution | int) -> ChunkName:
        """The chunk name after the highest number used for `revolution` (inbox, done, quarantine)."""
        rev = Revolution.parse(revolution)
        used = [c.number for where in ("", "done", "quarantine") for c in self._list(where) if c.revolution == rev]
        return ChunkName(rev, max(used) + 1 if used else 0)

    # ---- reading (the NRT daemon)
    def _list(self, where: str) -> list[ChunkName]:
        folder = {"": self.root, "done": self.done_dir, "quarantine": self.quarantine_dir}[where]
        out = []
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        for e in entries:
            if e.name.startswith(".") or e.name.endswith(".reason.json") or e.name in ("done", "quarantine"):
                continue  # temporary files of atomic writes; reason files; our subfolders
            try:
                c = ChunkName.parse(e.name)
            except (InboxError, IdError):
                log.warning("inbox %s: ignoring %r: not a chunk name TM_RRRR_NNNNNN.pkt", folder, e.name)
                continue
            if not e.is_file(follow_symlinks=False):
                log.warning("inbox %s: ignoring %s: not a regular file (symlinks are not followed)", folder, e.name)
                continue
            out.append(c)
        return sorted(out)

    def pending(self) -> list[ChunkName]:
        """Chunks waiting in the inbox, in arrival order (revolution, chunk number)."""
        return self._list("")

    def read(self, name: ChunkName) -> Chunk:
        """Read a waiting chunk (never follows a symlink); its damage, if any, is in `problem`."""
        path = self.path(name)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            raw = f.read()
        data, announced, problem = decode_chunk(raw, name)
        return Chunk(name, data, announced, problem)

    def mark_done(self, name: ChunkName, durable: bool = True) -> Path:
        """Move a processed chunk to done/."""
        return self._move(name, "done", durable)

    def quarantine(self, name: ChunkName, reason: str, durable: bool = True) -> Path:
        """Move a damaged chunk to quarantine/ beside `<name>.reason.json` (written first)."""
        doc = {"chunk": str(name), "reason": str(reason),
               "time": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        reason_path = self.quarantine_dir / f"{name}.reason.json"
        atomic_write_bytes(reason_path, json.dumps(doc, indent=1).encode(), durable=durable)
        return self._move(name, "quarantine", durable)

    def quarantine_reason(self, name: ChunkName) -> str | None:
        """The reason recorded for a quarantined chunk (None if there is none)."""
        try:
            return json.loads((self.quarantine_dir / f"{self.path(name).name}.reason.json").read_text())["reason"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return None

    def quarantined(self) -> list[ChunkName]:
        return self._list("quarantine")

    def processed(self) -> list[ChunkName]:
        return self._list("done")

    def _move(self, name: ChunkName, where: str, durable: bool) -> Path:
        src, dst = self.path(name), self.path(name, where)
        if src.is_symlink():
            raise InboxError(f"{src} is a symlink: refused")
        os.replace(src, dst)
        if durable:
            fsync_dir(dst.parent)
            fsync_dir(src.parent)
        return dst
