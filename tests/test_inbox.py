"""The telemetry inbox: chunk names, chunk format, atomic writes, arrival order, done/quarantine."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isdc.dal.inbox import CHUNK_HEADER_SIZE, ChunkName, Inbox, InboxError, decode_chunk, encode_chunk
from isdc.ids import Revolution
from isdc.telemetry.packets import APID_ISGRI_HK, PACKET_SIZE, build_packets, crc16_ccitt


def packets(n, seed=0):
    rng = np.random.default_rng(seed)
    return build_packets(APID_ISGRI_HK, 0, 1000 + np.arange(n), [8] * n, rng.integers(0, 256, (n, 384), dtype=np.uint8))


# --------------------------------------------------------------------------- names

def test_chunk_names():
    c = ChunkName.parse("TM_0665_000123.pkt")
    assert (c.revolution, c.number, str(c)) == (Revolution(665), 123, "TM_0665_000123.pkt")
    assert ChunkName(665, 7) == ChunkName(Revolution(665), 7)
    assert sorted([ChunkName(666, 0), ChunkName(665, 10), ChunkName(665, 9)]) == \
        [ChunkName(665, 9), ChunkName(665, 10), ChunkName(666, 0)]
    for bad in ("TM_0665_00012.pkt", "TM_665_000123.pkt", "tm_0665_000123.pkt", "TM_0665_000123.pkt.tmp",
                "../TM_0665_000123.pkt", "TM_0665_000123.pkt/..", "sub/TM_0665_000123.pkt", ".TM_0665_000123.pkt",
                "TM_0665_00012٣.pkt", "TM_0665_000123.pkt\n", ""):
        with pytest.raises(InboxError, match="not a chunk name"):
            ChunkName.parse(bad)
    with pytest.raises(InboxError, match="0..999999"):
        ChunkName(665, 10**6)


@settings(max_examples=300)
@given(st.text(max_size=30))
def test_only_the_pattern_becomes_a_name(text):
    try:
        c = ChunkName.parse(text)
    except InboxError:
        return
    assert str(c) == text and "/" not in text and ".." not in text


# --------------------------------------------------------------------------- chunk format

def test_chunk_header_bytes_and_round_trip():
    p = packets(3)
    raw = encode_chunk(p)
    assert len(raw) == CHUNK_HEADER_SIZE + 3 * PACKET_SIZE == 1222
    assert raw[:6] == b"ISDCTM" and raw[6] == 1 and raw[7] == 0
    assert raw[8:10] == (402).to_bytes(2, "big") and raw[10:14] == (3).to_bytes(4, "big")
    assert int.from_bytes(raw[14:16], "big") == crc16_ccitt(raw[:14])
    data, n, problem = decode_chunk(raw)
    assert (data, n, problem) == (p.tobytes(), 3, None)
    assert encode_chunk(p.tobytes()) == raw
    with pytest.raises(InboxError, match="not a whole number"):
        encode_chunk(p.tobytes()[:-1])


@pytest.mark.parametrize("cut,data_len,message", [
    (CHUNK_HEADER_SIZE + 2 * PACKET_SIZE + 100, 2 * PACKET_SIZE + 100,
     "truncated: header announces 3 packets (1206 bytes), the file has 904 bytes"),
    (10, 0, "shorter than the 16-byte chunk header"),
])
def test_truncated_chunks(cut, data_len, message):
    raw = encode_chunk(packets(3))[:cut]
    data, n, problem = decode_chunk(raw, "TM_0665_000001.pkt")
    assert len(data) == data_len and message in problem and problem.startswith("TM_0665_000001.pkt: ")


def test_damaged_chunk_headers():
    raw = bytearray(encode_chunk(packets(2)))
    assert "not a telemetry chunk" in decode_chunk(b"SIMPLE  =" + bytes(raw[9:]))[2]
    bad = bytearray(raw)
    bad[12] ^= 1  # packet count changed: the header CRC catches it
    assert decode_chunk(bytes(bad))[2].endswith("chunk header CRC mismatch")
    data, n, problem = decode_chunk(bytes(raw) + b"xyz")
    assert n == 2 and len(data) == 2 * PACKET_SIZE and "3 bytes after the 2 packets" in problem


# --------------------------------------------------------------------------- the folder

def test_write_list_read_and_move(tmp_path):
    ib = Inbox(tmp_path / "inbox")
    assert ib.next_name(665) == ChunkName(665, 0)
    names = [ChunkName(665, k) for k in (2, 0, 10, 1)]
    for k, name in enumerate(names):
        ib.write(name, encode_chunk(packets(k + 1, seed=k)), durable=False)
    ib.write(ChunkName(664, 999), encode_chunk(packets(1)), durable=False)
    assert ib.pending() == [ChunkName(664, 999)] + [ChunkName(665, k) for k in (0, 1, 2, 10)]
    assert ib.next_name(665) == ChunkName(665, 11)
    c = ib.read(ChunkName(665, 10))
    assert c.problem is None and c.announced == 3 and np.array_equal(c.packets, packets(3, seed=2))
    with pytest.raises(InboxError, match="already exists"):
        ib.write(ChunkName(665, 10), b"")
    done = ib.mark_done(ChunkName(665, 10))
    assert done == tmp_path / "inbox" / "done" / "TM_0665_000010.pkt" and done.is_file()
    with pytest.raises(InboxError, match="already exists in done"):
        ib.write(ChunkName(665, 10), b"")
    q = ib.quarantine(ChunkName(665, 0), "truncated: header announces 1 packets")
    assert q.is_file() and ib.quarantine_reason(ChunkName(665, 0)) == "truncated: header announces 1 packets"
    doc = json.loads((tmp_path / "inbox" / "quarantine" / "TM_0665_000000.pkt.reason.json").read_text())
    assert doc["chunk"] == "TM_0665_000000.pkt" and doc["time"].endswith("Z")
    assert ib.pending() == [ChunkName(664, 999), ChunkName(665, 1), ChunkName(665, 2)]
    assert ib.processed() == [ChunkName(665, 10)] and ib.quarantined() == [ChunkName(665, 0)]
    assert ib.next_name(665) == ChunkName(665, 11)  # numbers used in done/ and quarantine/ count
    with pytest.raises(TypeError, match="ChunkName"):
        ib.path("TM_0665_000001.pkt")


def test_foreign_files_temporary_files_and_symlinks_are_ignored(tmp_path, caplog):
    ib = Inbox(tmp_path)
    ib.write(ChunkName(665, 1), encode_chunk(packets(1)), durable=False)
    (tmp_path / ".TM_0665_000002.pkt.abc.tmp").write_bytes(b"half a chunk")  # an atomic write in progress
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "TM_0665_000003.pkt").mkdir()
    outside = tmp_path.parent / "outside.pkt"
    outside.write_bytes(encode_chunk(packets(1)))
    os.symlink(outside, tmp_path / "TM_0665_000004.pkt")
    assert ib.pending() == [ChunkName(665, 1)]
    assert "notes.txt" in caplog.text and "TM_0665_000004.pkt: not a regular file" in caplog.text
    with pytest.raises(OSError):
        ib.read(ChunkName(665, 4))  # O_NOFOLLOW
    with pytest.raises(InboxError, match="symlink"):
        ib.mark_done(ChunkName(665, 4))


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    ib = Inbox(tmp_path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        ib.write(ChunkName(665, 1), encode_chunk(packets(2)))
    monkeypatch.undo()
    assert ib.pending() == [] and sorted(p.name for p in tmp_path.iterdir()) == ["done", "quarantine"]


def test_missing_inbox(tmp_path):
    with pytest.raises(InboxError, match="does not exist"):
        Inbox(tmp_path / "nope", create=False)
