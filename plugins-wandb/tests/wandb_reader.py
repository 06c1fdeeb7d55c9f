"""Read back an offline W&B run: its ``.wandb`` file (records) and its ``files/`` directory.

wandb has no public reader. The file is a 7-byte header (``:W&B``, magic 0xBEE1, version 0)
followed by LevelDB-log framing: 32 KiB blocks of records, each with a 7-byte header
(crc32 seeded by the record type, little-endian length, type FULL/FIRST/MIDDLE/LAST) and a
serialized ``wandb.proto.wandb_internal_pb2.Record`` as payload (see wandb's
``sdk/internal/datastore.py``).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

HEADER = struct.Struct("<4sHB")
RECORD_HEADER = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    """Every record of a ``.wandb`` file, checksums verified."""
    data = path.read_bytes()
    ident, magic, version = HEADER.unpack_from(data, 0)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"not a .wandb file: {path}"
    pos, pending = HEADER.size, b""
    while pos + RECORD_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER.size:  # block trailer: zero padding
            pos += left
            continue
        checksum, length, kind = RECORD_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:
            break
        chunk = data[pos + RECORD_HEADER.size : pos + RECORD_HEADER.size + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == checksum, f"bad crc at {pos}"
        pos += RECORD_HEADER.size + length
        if kind == FULL:
            payload = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        else:
            assert kind == LAST, f"unknown record type {kind}"
            payload, pending = pending + chunk, b""
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        yield record


def _items_to_dict(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key = "/".join(item.nested_key) if item.nested_key else item.key
        out[key] = json.loads(item.value_json)
    return out


@dataclass
class OfflineRun:
    """What an offline run recorded: run info, config, history rows and the final summary."""

    path: Path
    run: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    record_types: list[str] = field(default_factory=list)

    @property
    def files_dir(self) -> Path:
        """The run's ``files/`` directory (media such as tables live under it)."""
        return self.path.parent / "files"

    def rows_with(self, key: str) -> list[dict[str, Any]]:
        """History rows that have ``key``."""
        return [row for row in self.history if key in row]

    def trace_trees(self, key: str = "trace") -> list[dict[str, Any]]:
        """The root spans of every trace tree logged under ``key``, decoded."""
        return [
            json.loads(row[f"{key}/root_span_dumps"])
            for row in self.rows_with(f"{key}/root_span_dumps")
        ]

    def table(self, key: str) -> dict[str, Any]:
        """The latest version of table ``key``: ``{"columns": [...], "data": [[...], ...]}``."""
        path = self.summary[f"{key}/path"]
        return json.loads((self.files_dir / path).read_text())


def read_run(path: Path) -> OfflineRun:
    """Parse a ``.wandb`` file into an :class:`OfflineRun`."""
    result = OfflineRun(path)
    for record in iter_records(path):
        kind = record.WhichOneof("record_type")
        result.record_types.append(kind)
        if kind == "run":
            result.run = record.run
            result.config.update(_items_to_dict(record.run.config.update))
        elif kind == "config":
            result.config.update(_items_to_dict(record.config.update))
        elif kind == "history":
            result.history.append(_items_to_dict(record.history.item))
        elif kind == "summary":
            result.summary.update(_items_to_dict(record.summary.update))
    return result


def find_run_file(root: Path) -> Path:
    """The single ``.wandb`` file under ``root``."""
    files = sorted(root.rglob("run-*.wandb"))
    assert len(files) == 1, f"expected one .wandb file under {root}, found {files}"
    return files[0]
