"""Reading the embedded connector's offsets file (cdc.local.debezium.stored_offsets), which the
dropped-slot check and `cdc connector reset-offsets` rely on."""

from __future__ import annotations

from pathlib import Path

from cdc.local.debezium import stored_offsets


def _entry(key: bytes, value: bytes) -> bytes:
    """One HashMap entry as Java serialises two byte arrays (as FileOffsetBackingStore does)."""
    return (
        b"ur\x00\x02[B\xac\xf3\x17\xf8\x06\x08T\xe0\x02\x00\x00xp"
        + len(key).to_bytes(4, "big")
        + key
        + b"uq\x00~\x00\x02"
        + len(value).to_bytes(4, "big")
        + value
    )


HEADER = (
    b"\xac\xed\x00\x05sr\x00\x11java.util.HashMap\x05\x07\xda\xc1\xc3\x16`\xd1\x03\x00\x02F\x00"
    b"\nloadFactorI\x00\tthresholdxp?@\x00\x00\x00\x00\x00\x0cw\x08\x00\x00\x00\x10\x00\x00\x00"
    b"\x02"
)


def test_offsets_of_each_connector_are_read(tmp_path: Path) -> None:
    path = tmp_path / "offsets.dat"
    path.write_bytes(
        HEADER
        + _entry(
            b'["cdc-postgres",{"server":"t1"}]',
            b'{"lsn_proc":49541464,"lsn_commit":49541464,"lsn":49541464,"messageType":"MESSAGE"}',
        )
        + _entry(b'["other",{"server":"shop"}]', b'{"last_snapshot_record":false,"lsn":7}')
        + b"x"
    )
    assert stored_offsets(path) == {
        ("cdc-postgres", "t1"): {
            "lsn_proc": 49541464,
            "lsn_commit": 49541464,
            "lsn": 49541464,
            "messageType": "MESSAGE",
        },
        ("other", "shop"): {"last_snapshot_record": False, "lsn": 7},
    }


def test_no_file_means_no_offsets(tmp_path: Path) -> None:
    assert stored_offsets(tmp_path / "missing.dat") == {}
    (tmp_path / "garbage.dat").write_bytes(b"\x00\x01 not an offsets file")
    assert stored_offsets(tmp_path / "garbage.dat") == {}
