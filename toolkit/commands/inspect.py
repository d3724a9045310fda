"""`edgeseq inspect FILE.tflite`: signature, ops by dtype, weights, MACs and memory of any .tflite. No TensorFlow."""

from __future__ import annotations

import click

from edgeseq.commands._options import echo_json, json_option


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _sig(t: dict) -> str:
    q = f" scale={t['scale']:.3g} zp={t['zero_point']}" if isinstance(t.get("scale"), float) else ""
    return f"{t['name']}  {t['dtype']}{t['shape']}{q}"


@click.command()
@click.argument("path", type=click.Path())  # the checked reader names a directory, FIFO or device itself
@json_option("the full report")
@click.option("--runtime", type=click.Choice(["ai_edge_litert", "tflite_runtime"]), default="ai_edge_litert",
              show_default=True, help="The runtime the memory estimate is for.")
def inspect(path: str, as_json: bool, runtime: str) -> None:
    """Describe a .tflite: inputs/outputs, ops by count and dtype, weights, estimated MACs and memory."""
    from edgeseq.quantize.inspect import inspect_tflite

    r = inspect_tflite(path, runtime)
    if as_json:
        echo_json("inspect", r)
        return
    for line in render(r):
        click.echo(line)


def render(r: dict) -> list[str]:
    """The text report of `inspect_tflite`'s result, line by line."""
    cov, w, macs = r["dtype_coverage"], r["weights"], r["macs"]
    out = [f"{r['path']}: {_kb(r['bytes'])}, sha256 {r['sha256'][:12]}, {r['subgraphs']} subgraph(s)"]
    for kind in ("inputs", "outputs"):
        for t in r[kind]:
            out.append(f"  {kind[:-1]:6} {_sig(t)}")
    out.append(f"ops: {r['ops']['total']} ({cov['quantized_share']:.0%} quantized, {cov['float_ops']} float)")
    for name, op in sorted(r["ops"]["by_type"].items(), key=lambda kv: -kv[1]["count"]):
        dtypes = ", ".join(f"{d} {n}" for d, n in op["dtypes"].items())
        out.append(f"  {name:28} {op['count']:5}  {dtypes}")
    by_dtype = ", ".join(f"{d} {_kb(n)}" for d, n in w["bytes_by_dtype"].items())
    out.append(f"weights: {_kb(w['bytes'])} ({by_dtype}); ~{w['parameters']:,} parameters")
    per_op = ", ".join(f"{k} {v:,}" for k, v in macs["by_op"].items())
    out.append(f"MACs (estimate): {macs['total']:,}" + (f" ({per_op})" if per_op else ""))
    for note in macs["notes"]:
        out.append(f"  note: {note}")
    out.append(f"peak activation memory (estimate): {_kb(r['peak_activation_bytes'])}")
    m = r["memory_estimate"]
    out.append(f"memory on {m['calibration']} (estimate of what the model adds to a process): {m['total_kb']:,.0f} KiB")
    out.append(f"  weights {m['weights_kb']:,.0f}, graph {m['graph_kb']:,.0f}, arena {m['arena_kb']:,.0f}, "
               f"state {m['state_kb']:,.1f}, XNNPACK {m['xnnpack_kb']:,.0f} ({m['xnnpack_nodes']} nodes, "
               f"{m['xnnpack_packed_kb']:,.0f} KiB of packed weights); plus ~{m['code_kb']:,.0f} KiB of the runtime's "
               "machine code paged in (shared, not the model's)")
    if r["flex_ops"]:
        out.append(f"Flex ops: {', '.join(r['flex_ops'])} (stock device runtimes cannot run these)")
    return out
