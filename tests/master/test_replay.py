"""The replay windows file: two slots rewritten in place, each checked by a CRC, so a torn
write costs at most one save; and a master killed with SIGKILL still refuses what it accepted
before."""

from __future__ import annotations

import logging
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from bramble_testing import Master, sample_body, wait_for
from hypothesis import given
from hypothesis import strategies as st

from bramble.master.replay import (
    KEEP,
    ReplayStore,
    Window,
    decode_slot,
    encode_slot,
    read_windows,
)

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)
windows = st.dictionaries(
    names,
    st.tuples(
        st.integers(0, 2**63 - 1),
        st.integers(0, 2**63 - 1),
        st.floats(0, 2**40, allow_nan=False),
    ),
    max_size=20,
)


@given(windows, st.integers(0, 2**64 - 1))
def test_a_slot_round_trips(saved: dict[str, Window], generation: int) -> None:
    assert decode_slot(encode_slot(generation, 12.5, saved)) == (generation, 12.5, saved)


@given(windows.filter(bool), st.data())
def test_a_damaged_or_cut_slot_is_not_read(saved: dict[str, Window], data: st.DataObject) -> None:
    slot = encode_slot(7, 1.0, saved)
    cut = data.draw(st.integers(0, len(slot) - 1))
    assert decode_slot(slot[:cut]) is None
    at = data.draw(st.integers(0, len(slot) - 1))
    flipped = bytearray(slot)
    flipped[at] ^= data.draw(st.integers(1, 255))
    assert decode_slot(bytes(flipped)) is None


def test_saves_alternate_and_a_torn_slot_falls_back_to_the_other(tmp_path: Path) -> None:
    path = tmp_path / "replay.windows"
    store = ReplayStore(path).open()
    store.save({"node-1": (1, 5, 100.0)})
    store.save({"node-2": (1, 9, 101.0)})
    store.save({"node-1": (1, 6, 102.0)})
    store.close()
    data = path.read_bytes()
    assert len(data) == 2 * 4096  # two slots of a page: a save rewrites one, in place
    newest = {"node-1": (1, 6, 102.0), "node-2": (1, 9, 101.0)}
    assert read_windows(data) == (3, newest)
    assert ReplayStore(path).open().load() == newest

    # the newest slot torn (a power cut while its pages were written): the one before it
    half = len(data) // 2
    generation = read_windows(data)
    assert generation is not None
    index = generation[0] % 2
    torn = bytearray(data)
    torn[index * half + 30] ^= 0xFF
    path.write_bytes(bytes(torn))
    reopened = ReplayStore(path).open()
    assert reopened.load() == {"node-1": (1, 5, 100.0), "node-2": (1, 9, 101.0)}
    reopened.save({"node-3": (2, 1, 103.0)})  # the torn slot is the next one written
    reopened.close()
    assert ReplayStore(path).open().load() == {
        "node-1": (1, 5, 100.0),
        "node-2": (1, 9, 101.0),
        "node-3": (2, 1, 103.0),
    }


def test_a_file_with_no_whole_slot_is_treated_as_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "replay.windows"
    store = ReplayStore(path).open()
    store.save({"node-1": (1, 5, 100.0)})
    store.close()
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    data[len(data) // 2 + 10] ^= 1
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        store = ReplayStore(path).open()
    assert store.load() == {}
    assert "damaged" in caplog.text and "clock window" in caplog.text
    store.save({"node-2": (1, 1, 1.0)})  # and it works on from there
    store.close()
    assert ReplayStore(path).open().load() == {"node-2": (1, 1, 1.0)}


def test_the_file_grows_for_many_nodes_and_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "replay.windows"
    store = ReplayStore(path).open()
    many = {f"node-{i:05d}-" + "x" * 40: (1, i, float(i)) for i in range(KEEP + 100)}
    store.save(many)
    store.close()
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = ReplayStore(path).open().load()
    assert len(loaded) == KEEP
    assert min(w[2] for w in loaded.values()) == 100.0


def test_the_windows_of_an_earlier_sqlite_file_are_kept(tmp_path: Path) -> None:
    legacy = tmp_path / "replay.db"
    db = sqlite3.connect(legacy)
    db.execute(
        "CREATE TABLE window (node TEXT PRIMARY KEY, boot INTEGER NOT NULL, "
        "seq INTEGER NOT NULL, ts REAL NOT NULL)"
    )
    db.execute("INSERT INTO window VALUES ('node-1', 3, 42, 1000.5)")
    db.commit()
    db.close()
    store = ReplayStore(tmp_path / "replay.windows").open()
    assert store.load() == {"node-1": (3, 42, 1000.5)}
    store.close()
    assert not legacy.exists()
    assert ReplayStore(tmp_path / "replay.windows").open().load() == {"node-1": (3, 42, 1000.5)}


def saved_seq(master: Master, node: str) -> int:
    """NODE's seq in the master's windows file as the page cache holds it (0 if none)."""
    path = Path(master.spec.history.path).with_name("replay.windows")
    found = read_windows(path.read_bytes()) if path.exists() else None
    window = found[1].get(node) if found else None
    return window[1] if window else 0


@pytest.mark.slow
def test_sigkill_twice_and_captured_datagrams_are_still_refused(
    start_master: Callable[..., Master],
) -> None:
    master = start_master(interval=0.2)
    now = time.time()
    captured = [
        master.signed(sample_body("node-1", seq, ts=now - 0.2 * (9 - seq), interval=0.2))
        for seq in range(1, 9)
    ]
    for data in captured[:5]:
        master.send(data)
    wait_for(lambda: saved_seq(master, "node-1") == 5, 5, "seq 5 saved")
    master.stop(signal.SIGKILL)  # nothing synced: the windows are in the page cache
    master.start()
    for data in captured[:5]:
        master.send(data)
    wait_for(lambda: master.rejected("replay") == 5, 5, "5 replays refused")

    for data in captured[5:]:  # the run after a kill saves in turn, and is killed too
        master.send(data)
    wait_for(lambda: saved_seq(master, "node-1") == 8, 5, "seq 8 saved")
    master.stop(signal.SIGKILL)
    master.start()
    for data in captured:
        master.send(data)
    wait_for(lambda: master.rejected("replay") == 8, 5, "8 replays refused")
    time.sleep(0.3)
    assert master.stats()["accepted"] == 0
    master.send(sample_body("node-1", 9, interval=0.2))
    wait_for(lambda: master.api("/api/nodes/node-1")["seq"] == 9, 5, "node-1's next datagram")
