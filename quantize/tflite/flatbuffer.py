"""The flatbuffers layer of a .tflite checked the way LiteRT's C++ loader checks it (flatbuffers::Verifier, run by
`VerifyModelBuffer` before the interpreter is built), in Python.

Python's flatbuffers runtime reads whatever an offset points at: a misaligned table, a vtable outside the file, a
string without its terminating zero or running past the end come back as garbage or as silently shortened bytes,
where LiteRT refuses the file ("The model is not a valid Flatbuffer buffer"). This walk applies the C++ verifier's
rules to every table reachable from the root, using field layouts read once from the schema module that ships in
ai-edge-litert (so it follows that schema, never a copy of it). It also bounds the work: a file may reference at most
one table per 4 of its bytes, so tables shared by many references cannot make a small file unpack into billions of
objects.
"""

from __future__ import annotations

import functools
import re
import struct
from typing import Any

from edgeseq.core.errors import ModelError

_MAX_BUFFER = 2**31 - 1  # FLATBUFFERS_MAX_BUFFER_SIZE
_SIZES = {"Bool": 1, "Int8": 1, "Uint8": 1, "Int16": 2, "Uint16": 2, "Int32": 4, "Uint32": 4, "Int64": 8,
          "Uint64": 8, "Float32": 4, "Float64": 8}
_U16, _U32, _I32 = struct.Struct("<H").unpack_from, struct.Struct("<I").unpack_from, struct.Struct("<i").unpack_from
# Field kinds of the layout table.
SCALAR, TABLE, STRING, VECTOR, TABLES, STRINGS, UNION = range(7)


@functools.lru_cache(maxsize=1)
def layouts(schema: Any) -> dict[str, list[tuple[int, int, Any]]]:
    """Per table name: [(vtable slot, kind, arg)], read from the generated accessors of `schema`.

    arg: a scalar's or vector element's size, a table's name, or for a union (type slot, {type value: table name}).
    """
    with open(schema.__file__, encoding="utf-8") as fh:
        src = fh.read()
    parts = re.split(r"^class (\w+)\(object\):\n", src, flags=re.M)
    bodies = dict(zip(parts[1::2], parts[2::2], strict=True))
    members = {}
    for m in re.finditer(r"^def (\w+)Creator\(unionType, table\):\n(.*?)(?=^def |^class |\Z)", src, flags=re.M | re.S):
        enum = getattr(schema, m.group(1))
        members[m.group(1)] = {getattr(enum, k): t for k, t in
                               re.findall(r"unionType == \w+\.(\w+):\n\s+return (\w+)T\.InitFromBuf", m.group(2))}
    unions = {(n[:-1], f[0].upper() + f[1:]): c for n, b in bodies.items()
              for f, c in re.findall(r"self\.(\w+) = (\w+)Creator\(self\.\w+Type,", b)}
    out: dict[str, list[tuple[int, int, Any]]] = {}
    for name, body in bodies.items():
        if "self._tab = flatbuffers.table.Table(buf, pos)" not in body:
            continue
        slots: dict[str, int] = {}
        fields = []
        for meth in re.split(r"\n    # \w+\n    def ", body)[1:]:
            mname = meth.split("(")[0]
            slot = re.search(r"self\._tab\.Offset\((\d+)\)", meth)
            if not slot or mname.endswith(("Length", "IsNone", "AsNumpy")):
                continue
            slot = int(slot.group(1))
            slots[mname] = slot
            obj = re.search(r"obj = (\w+)\(\)", meth)
            scalar = re.search(r"number_types\.(\w+)Flags, (?:o|a) \+ ", meth)
            elem = re.search(r"py_type\(j \* (\d+)\)", meth)
            if "self._tab.Union(" in meth:
                fields.append((slot, UNION, mname))
            elif "self._tab.Vector(o)" in meth and "Indirect(x)" in meth and obj:
                fields.append((slot, TABLES, obj.group(1)))
            elif "self._tab.Vector(o)" in meth and "self._tab.String(a" in meth:
                fields.append((slot, STRINGS, None))
            elif "self._tab.Vector(o)" in meth and elem:
                fields.append((slot, VECTOR, int(elem.group(1))))
            elif "self._tab.Indirect(o + self._tab.Pos)" in meth and obj:
                fields.append((slot, TABLE, obj.group(1)))
            elif "self._tab.String(o + self._tab.Pos)" in meth:
                fields.append((slot, STRING, 1))
            elif scalar and scalar.group(1) in _SIZES:
                fields.append((slot, SCALAR, _SIZES[scalar.group(1)]))
            else:  # pragma: no cover - a generator pattern this reader does not know; fail loudly in tests
                raise RuntimeError(f"unrecognized accessor {name}.{mname} in {schema.__file__}")
        out[name] = [(s, k, (slots[a + "Type"], members[unions[(name, a)]]) if k == UNION else a)
                     for s, k, a in fields]
    return out


def verify_flatbuffer(schema: Any, data: bytes, path: str, hint: str) -> None:
    """Raise ModelError unless `data` is a well-formed Model flatbuffer (the identifier is checked by the caller)."""
    n = len(data)

    def fail(what: str) -> ModelError:
        return ModelError(f"{path}: corrupt TFLite file: {what}", hint)

    if n >= _MAX_BUFFER:
        raise fail(f"{n:,} bytes, over the flatbuffers limit of {_MAX_BUFFER:,}")
    spec = layouts(schema)
    root = _U32(data, 0)[0]
    if root == 0 or root >= 2**31 or root >= n:
        raise fail(f"the root offset {root:,} is outside the file")
    budget = n // 4
    stack: list[tuple[int, str]] = [(root, "Model")]
    visits = 0
    while stack:
        pos, name = stack.pop()
        visits += 1
        if visits > budget:
            raise fail(f"its tables are referenced more often ({visits:,}+) than a {n:,}-byte file has room for "
                       "(shared tables)")
        if pos & 3 or pos + 4 > n:
            raise fail(f"a {name} table at byte {pos:,} is misaligned or outside the file")
        vt = pos - _I32(data, pos)[0]
        if vt < 0 or vt & 1 or vt + 2 > n:
            raise fail(f"the {name} table at byte {pos:,} has its field table outside the file")
        vsize = _U16(data, vt)[0]
        if vsize & 1 or vsize < 4 or vt + vsize > n:
            raise fail(f"the {name} table at byte {pos:,} has a malformed field table")
        for slot, kind, arg in spec[name]:
            if slot + 2 > vsize:
                continue
            off = _U16(data, vt + slot)[0]
            if not off:
                continue
            at = pos + off
            if kind == SCALAR:
                if at % arg or at + arg > n:
                    raise fail(f"a field of the {name} table at byte {pos:,} is misaligned or outside the file")
                continue
            if at & 3 or at + 4 > n:
                raise fail(f"a reference in the {name} table at byte {pos:,} is misaligned or outside the file")
            rel = _U32(data, at)[0]
            if rel == 0 or rel >= 2**31 or at + rel >= n:
                raise fail(f"a reference in the {name} table at byte {pos:,} points outside the file")
            target = at + rel
            if kind == TABLE:
                stack.append((target, arg))
            elif kind == UNION:
                type_slot, members = arg
                type_off = _U16(data, vt + type_slot)[0] if type_slot + 2 <= vsize else 0
                utype = data[pos + type_off] if type_off and pos + type_off < n else 0
                if utype in members:  # NONE and unknown types are not followed, as in C++
                    stack.append((target, members[utype]))
            else:
                elem = 4 if kind in (TABLES, STRINGS) else arg
                length = _vector(data, target, elem, fail, name, pos, string=kind == STRING)
                if kind == TABLES:
                    for i in range(target + 4, target + 4 + 4 * length, 4):
                        stack.append((i + _U32(data, i)[0], arg))
                elif kind == STRINGS:
                    for i in range(target + 4, target + 4 + 4 * length, 4):
                        _vector(data, i + _U32(data, i)[0], 1, fail, name, pos, string=True)


def _vector(data: bytes, at: int, elem: int, fail, name: str, pos: int, string: bool = False) -> int:
    n = len(data)
    if at & 3 or at + 4 > n:
        raise fail(f"a {'string' if string else 'list'} of the {name} table at byte {pos:,} is misaligned or "
                   "outside the file")
    length = _U32(data, at)[0]
    end = at + 4 + length * elem
    if length >= _MAX_BUFFER // elem or end > n:
        raise fail(f"a {'string' if string else 'list'} of the {name} table at byte {pos:,} claims {length:,} "
                   "entries, past the end of the file")
    if string and (end >= n or data[end] != 0):
        raise fail(f"a string of the {name} table at byte {pos:,} is not terminated")
    return length
