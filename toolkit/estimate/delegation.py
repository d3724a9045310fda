"""Which ops the XNNPACK delegate takes, as the host's own runtime decides: each op cut out as a one-op model and
loaded (never run) with XNNPACK on; an op is delegated when the interpreter's execution plan holds a DELEGATE node.

The delegate's rules are not the op type alone: an int8 BATCH_MATMUL of two activations is taken when its right
operand's zero point is 0 and left to the builtin kernel otherwise (measured: the same [4, 256, 12] x [4, 12, 256]
product costs 65 µs delegated, 450 µs on the builtin kernel), so they are asked of the runtime, op by op, instead of
written down here. The estimate fits delegated and builtin ops apart, and counts the delegate's partitions (each a
call into XNNPACK per invoke, or per trip inside a WHILE body). About 1 ms per op on this machine.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from edgeseq.core.fsio.tfquiet import native_quiet
from edgeseq.estimate.work import LOOP_OPS, ONCE_OPS, ModelWork
from edgeseq.quantize.tflite.reader import TFLiteFile


def _taken(cls: Any, data: bytes) -> bool:
    try:
        interp = cls(model_content=data, num_threads=1)
        interp.allocate_tensors()
        details = interp._get_ops_details()  # noqa: SLF001 - the only view of the execution plan in both runtimes
    except Exception:  # noqa: BLE001 - an op the runtime cannot load on its own is no delegate's: builtin
        return False
    return any(d.get("op_name") == "DELEGATE" for d in details)


def delegated_ops(f: TFLiteFile) -> dict[tuple[int, int], bool] | None:
    """(subgraph, op index) -> taken by XNNPACK, for the main graph and its WHILE loops' cond and body; None when no
    host runtime can say (the estimate then treats every op as delegated with XNNPACK on, as before)."""
    from edgeseq.core.errors import RuntimeMissing
    from edgeseq.quantize.op_slices import why_not
    from edgeseq.quantize.runtime import interpreter_class

    try:
        cls, _, _ = interpreter_class()
    except RuntimeMissing:
        return None
    if not hasattr(cls, "_get_ops_details") or why_not(f):
        return None
    subgraphs = f.model.subgraphs or []
    todo = [0]
    for op in (subgraphs[0].operators or []) if subgraphs else []:
        if f.op_names[op.opcodeIndex] in LOOP_OPS:
            todo += [int(op.builtinOptions.condSubgraphIndex), int(op.builtinOptions.bodySubgraphIndex)]
    out: dict[tuple[int, int], bool] = {}
    with native_quiet():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" notice, once per process
        _ask(f, cls, todo, out)
    return out


def _ask(f: TFLiteFile, cls: Any, todo: list[int], out: dict[tuple[int, int], bool]) -> None:
    from edgeseq.quantize.op_slices import slice_op

    subgraphs = f.model.subgraphs
    for s in todo:
        sg = subgraphs[s]
        for i, op in enumerate(sg.operators or []):
            if f.op_names[op.opcodeIndex] in LOOP_OPS + ONCE_OPS:
                out[(s, i)] = False
                continue
            try:
                data, _ = slice_op(f, sg, op, 1)
            except Exception:  # noqa: BLE001 - an op that cannot be cut is counted as the builtin kernel's
                out[(s, i)] = False
                continue
            out[(s, i)] = _taken(cls, data)


def partitions(flags: dict[tuple[int, int], bool], subgraph: int, count: int) -> int:
    """The delegate's partitions in one subgraph: runs of consecutive delegated ops (XNNPACK's partitioner joins
    neighbours; an op it leaves to the builtin kernels splits them)."""
    runs, inside = 0, False
    for i in range(count):
        taken = flags.get((subgraph, i), False)
        if taken and not inside:
            runs += 1
        inside = taken
    return runs


def with_delegation(work: ModelWork, flags: dict[tuple[int, int], bool] | None) -> ModelWork:
    """`work` with each op's `delegated` set and the partitions' calls per invoke counted (unchanged for None)."""
    if flags is None:
        return work
    ops = [replace(op, delegated=flags.get((op.subgraph, op.index), False)) for op in work.ops]
    calls: dict[int, int] = {}
    count: dict[int, int] = {}
    for op in ops:
        calls[op.subgraph] = max(calls.get(op.subgraph, 0), op.calls)
        count[op.subgraph] = max(count.get(op.subgraph, 0), op.index + 1)
    total = sum(partitions(flags, s, count[s]) * calls[s] for s in calls)
    return replace(work, ops=ops, partition_calls=float(total))


def cached_delegated_ops(f: TFLiteFile, sha256: str) -> dict[tuple[int, int], bool] | None:
    """`delegated_ops`, kept in edgeseq's user cache by the file's sha256 and the runtime's name and version (the
    calibration's 70 files are asked once, not on every estimate); a missing or damaged entry is asked again."""
    import json

    from edgeseq.core.errors import RuntimeMissing
    from edgeseq.core.fsio import atomic_write_json
    from edgeseq.datasets.base import cache_dir
    from edgeseq.quantize.runtime import interpreter_class

    try:
        _, name, version = interpreter_class()
    except RuntimeMissing:
        return None
    path = cache_dir() / "delegation" / f"{name}-{version}" / f"{sha256}.json"
    try:
        return {(int(s), int(i)): bool(v) for s, i, v in json.loads(path.read_text())}
    except (OSError, ValueError, TypeError):
        pass
    flags = delegated_ops(f)
    if flags is not None:
        try:
            atomic_write_json(path, [[s, i, v] for (s, i), v in sorted(flags.items())])
        except OSError:
            pass  # a read-only cache: asked again next time
    return flags
