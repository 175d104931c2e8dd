"""The rule bridge's durable spool: first in, first out, on disk before the call returns, across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.stack.spool import HEADER, Spool, SpoolError


def test_messages_come_back_in_the_order_they_went_in(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    assert len(spool) == 0 and spool.peek() is None
    for n in range(5):
        assert spool.append(f"visualsearch/cam-{n % 2}/features", b"m%d" % n)
    assert len(spool) == 5
    out = []
    while (head := spool.peek()) is not None:
        out.append(head)
        spool.pop()
    assert out == [(f"visualsearch/cam-{n % 2}/features", b"m%d" % n) for n in range(5)]
    with pytest.raises(IndexError):
        spool.pop()


def test_what_was_appended_survives_a_restart_and_what_was_popped_does_not(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    for n in range(4):
        spool.append("t", bytes([n]) * 100)
    spool.pop()
    spool.close()  # a crash after this line loses nothing: every change was fsync'd
    again = Spool(tmp_path / "s")
    assert len(again) == 3 and again.peek() == ("t", bytes([1]) * 100)
    again.pop()
    again.append("t", b"new")
    again.close()
    third = Spool(tmp_path / "s")
    items = []
    while third.peek() is not None:
        items.append(third.peek())
        third.pop()
    assert items == [("t", bytes([2]) * 100), ("t", bytes([3]) * 100), ("t", b"new")]
    assert (tmp_path / "s" / "spool.bin").stat().st_size == 0  # an empty spool takes no disk


def test_a_torn_last_record_is_cut_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.append("t", b"whole")
    spool.close()
    with open(tmp_path / "s" / "spool.bin", "ab") as handle:  # killed mid-append: that one was never acked
        handle.write(HEADER.pack(1, 50) + b"t" + b"partial")
    again = Spool(tmp_path / "s")
    assert len(again) == 1 and again.peek() == ("t", b"whole")
    again.append("t", b"next")
    again.pop()
    assert again.peek() == ("t", b"next")


def test_a_full_spool_refuses_and_writes_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=HEADER.size * 2 + 20)
    assert spool.append("t", b"x" * 9)
    assert spool.append("t", b"x" * 9)
    assert not spool.append("t", b"y")
    assert len(spool) == 2 and spool.bytes_used == HEADER.size * 2 + 20
    spool.pop()
    assert spool.append("t", b"x" * 9)  # room again once the head is replayed


def test_an_unusable_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SpoolError, match="file"):
        Spool(tmp_path / "file")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "spool.head").write_bytes((10**6).to_bytes(8, "little"))
    with pytest.raises(SpoolError, match="delete the spool folder"):
        Spool(tmp_path / "s")


def test_an_emptied_spool_takes_new_messages_and_reopens(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.append("t", b"first")
    spool.pop()  # empty: truncated, head back to 0
    spool.append("t", b"second")
    assert spool.peek() == ("t", b"second") and spool.bytes_used == HEADER.size + 1 + 6
    spool.pop()
    spool.close()
    again = Spool(tmp_path / "s")
    assert len(again) == 0 and again.peek() is None
    again.append("t", b"third")
    again.close()
    assert Spool(tmp_path / "s").peek() == ("t", b"third")


def test_topic_length_limit_is_exact(tmp_path: Path) -> None:
    from simulator.stack.spool import MAX_TOPIC_BYTES

    spool = Spool(tmp_path / "s")
    assert spool.append("t" * MAX_TOPIC_BYTES, b"x")
    with pytest.raises(ValueError, match=f"over {MAX_TOPIC_BYTES}"):
        spool.append("t" * (MAX_TOPIC_BYTES + 1), b"x")
    assert len(spool) == 1
    spool.pop()
    with pytest.raises(IndexError, match="empty spool"):
        spool.pop()


def test_the_folder_is_created_with_its_parents(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "state" / "spool" / "worker-0")
    assert spool.append("t", b"kept")
    spool.close()
    assert Spool(tmp_path / "state" / "spool" / "worker-0").peek() == ("t", b"kept")


@pytest.mark.parametrize("head", [b"", b"\x05\x00\x00"])
def test_a_damaged_head_replays_everything_rather_than_losing_any(tmp_path: Path, head: bytes) -> None:
    """The head is replaced atomically, so a short one is damage from outside: replaying from the start only
    repeats messages (the store's idempotency refuses them); starting mid-record would lose them."""
    spool = Spool(tmp_path / "s")
    for n in range(3):
        spool.append("t", b"m%d" % n)
    spool.pop()
    spool.close()
    (tmp_path / "s" / "spool.head").write_bytes(head)
    again = Spool(tmp_path / "s")
    assert len(again) == 3 and again.peek() == ("t", b"m0")


def test_a_record_whose_body_is_cut_short_is_not_replayed(tmp_path: Path) -> None:
    """Header whole, topic whole, payload short: the record was never acked, so it is cut off, not replayed."""
    spool = Spool(tmp_path / "s")
    spool.append("t", b"whole")
    spool.close()
    with open(tmp_path / "s" / "spool.bin", "ab") as handle:
        handle.write(HEADER.pack(1, 2) + b"t" + b"x")
    again = Spool(tmp_path / "s")
    assert len(again) == 1 and again.peek() == ("t", b"whole")
    again.pop()
    assert again.peek() is None and (tmp_path / "s" / "spool.bin").stat().st_size == 0


def test_an_unusable_folder_and_an_empty_pop_say_what_is_wrong(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SpoolError) as refused:
        Spool(blocker / "spool")
    assert str(refused.value).endswith("is not usable: Not a directory")  # the OS's words, not a repr
    with pytest.raises(IndexError, match=r"^pop from an empty spool$"):
        Spool(tmp_path / "empty").pop()
