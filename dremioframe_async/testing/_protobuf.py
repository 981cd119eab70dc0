"""Just enough of Protocol Buffers' wire format for Flight SQL's messages.

Flight SQL's commands are small proto3 messages wrapped in ``google.protobuf.Any``
(``type_url`` field 1, ``value`` field 2). Every field FakeDremio reads or writes is
a varint (bool, uint32, int64), a string or bytes, so a full protobuf runtime, and
the generated classes pyarrow does not ship, are not needed.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["decode", "encode", "pack_any", "raw", "text", "unpack_any", "varint"]

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
TYPE_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."

Field = tuple[int, int | bytes]


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (position -1: truncated)."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            return 0, -1
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _field(data: bytes, pos: int) -> tuple[Field | None, int]:
    """The field at ``pos`` (None for a skipped fixed-width one) and the next position (-1: bad)."""
    key, pos = varint(data, pos)
    number, wire = key >> 3, key & 7
    if pos < 0:
        return None, -1
    if wire == _VARINT:
        value, pos = varint(data, pos)
        return (number, value), pos
    if wire == _LEN:
        size, pos = varint(data, pos)
        if pos < 0 or pos + size > len(data):
            return None, -1
        return (number, data[pos : pos + size]), pos + size
    if wire in (_I64, _I32):  # fixed-width: no Flight SQL field read here uses one
        return None, pos + (8 if wire == _I64 else 4)
    return None, -1


def decode(data: bytes) -> dict[int, list[int | bytes]] | None:
    """Every field of a message by number, repeated ones in order (None: not a message)."""
    out: dict[int, list[int | bytes]] = {}
    pos = 0
    while 0 <= pos < len(data):
        field, pos = _field(data, pos)
        if field is not None:
            out.setdefault(field[0], []).append(field[1])
    return out if pos == len(data) else None


def _encodevarint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64 values are ten-byte two's complement
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(fields: Iterable[tuple[int, int | bytes | str]]) -> bytes:
    """A message from ``(number, value)`` pairs: ints as varints, str/bytes length-delimited."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += _encodevarint(number << 3 | _VARINT) + _encodevarint(value)
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += _encodevarint(number << 3 | _LEN) + _encodevarint(len(raw)) + raw
    return bytes(out)


def pack_any(message: str, payload: bytes) -> bytes:
    """``google.protobuf.Any`` holding the Flight SQL ``message`` (its name, no prefix)."""
    return encode([(1, TYPE_PREFIX + message), (2, payload)])


def unpack_any(data: bytes) -> tuple[str, bytes] | None:
    """``(message name, payload)`` if ``data`` is an ``Any`` of a Flight SQL message."""
    fields = decode(data)
    if fields is None:
        return None
    type_url, value = fields.get(1, [b""])[0], fields.get(2, [b""])[0]
    if not isinstance(type_url, bytes) or not isinstance(value, bytes):
        return None
    name = type_url.decode(errors="replace")
    if not name.startswith(TYPE_PREFIX):
        return None
    return name.removeprefix(TYPE_PREFIX), value


def text(fields: dict[int, list[int | bytes]], number: int) -> str | None:
    """The string field ``number`` (None when absent)."""
    values = fields.get(number)
    if not values or not isinstance(values[-1], bytes):
        return None
    return values[-1].decode()


def raw(fields: dict[int, list[int | bytes]], number: int) -> bytes:
    """The bytes field ``number`` (empty when absent)."""
    values = fields.get(number)
    return values[-1] if values and isinstance(values[-1], bytes) else b""
