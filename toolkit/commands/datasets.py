"""`edgeseq datasets`: list the data sets; `show SPEC` describes one (or checks a user .npz); `download fsdd`."""

from __future__ import annotations

import sys

import click

from edgeseq import datasets as ds_lib
from edgeseq.commands._options import data_dir_option, echo_json, json_option

COLUMNS = ("name", "task", "train", "test", "classes", "source", "license", "status")


def _shape(shape: list[int]) -> str:
    return "x".join(str(v) for v in shape)


def _cells(row: dict) -> list[str]:
    return [row["name"], row["task"], _shape(row["train_shape"]), _shape(row["test_shape"]),
            str(row["num_classes"]) if row["num_classes"] else "-", row["source"], row["license"], row["status"]]


def _print_table(rows: list[list[str]], header: tuple[str, ...], wrap: tuple[str, ...] = ()) -> None:
    if sys.stdout.isatty():
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for col in header:
            table.add_column(col, no_wrap=col not in wrap)
        for r in rows:
            table.add_row(*r)
        Console().print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for r in [list(header), *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@click.group(invoke_without_command=True)
@json_option("the list (or, before `show`, what show prints)")
@data_dir_option()
@click.pass_context
def datasets(ctx: click.Context, as_json: bool, data_dir: str | None) -> None:
    """List data sets (shapes, classes, source, license); `show SPEC`; `download fsdd`.

    SPEC is a name (basic_motions, japanese_vowels, fsdd, electricity, adding), a name with parameters
    (adding:length=400, electricity:window=96,horizon=4), or the path of your own .npz.
    """
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir
    ctx.obj["json"] = as_json
    if ctx.invoked_subcommand is not None:
        return
    rows = ds_lib.list_datasets(data_dir=data_dir)
    if as_json:
        echo_json("datasets", {"datasets": rows})
        return
    _print_table([_cells(r) for r in rows], COLUMNS, wrap=("task", "classes", "source", "license", "status"))


@datasets.command("show")
@click.argument("spec")
@json_option("the description (with meta)")
@data_dir_option()
@click.pass_context
def show(ctx: click.Context, spec: str, as_json: bool, data_dir: str | None) -> None:
    """Load SPEC and describe it: shapes, dtypes, classes, preprocessing (validates a user .npz)."""
    as_json = as_json or ctx.obj.get("json", False)  # `datasets --json show X` as well as `datasets show X --json`
    from edgeseq.core.metrics import label_reading

    ds = ds_lib.load_dataset(spec, data_dir=data_dir or ctx.obj.get("data_dir"))
    info = {
        "name": ds.name, "task": ds.task, "train_shape": list(ds.X_train.shape), "test_shape": list(ds.X_test.shape),
        "y_train_shape": list(ds.y_train.shape), "y_test_shape": list(ds.y_test.shape),
        "seq_len": ds.seq_len, "num_features": None if ds.token_ids else ds.num_features, "output_dim": ds.output_dim,
        "num_classes": ds.num_classes, "class_names": list(ds.class_names) if ds.class_names else None,
        "input": (f"token ids int32 [N, {ds.seq_len}] (ids 0..{ds.max_token_id}: the model's vocabulary must be "
                  f"> {ds.max_token_id})" if ds.token_ids else f"features float32 [N, {ds.seq_len}, {ds.num_features}]"),
        "labels": ("one per time step" if ds.per_step else "one per sequence"),
        "reading": label_reading(ds.task, ds.y_train, ds.seq_len),
    }
    if ds.token_ids:
        info["max_token_id"] = ds.max_token_id
    if ds.inputs is not None:  # several inputs: X_train_<name> / X_test_<name>
        info["input"] = "; ".join(f"{k} [N, {', '.join(map(str, v))}]" for k, v in ds.meta["inputs"].items())
    if as_json:
        meta = {k: v for k, v in ds.meta.items()}
        pre = dict(meta.get("preprocessing") or {})
        for k in ("lengths_train", "lengths_test"):  # long per-sample lists: summarized in the text view too
            pre.pop(k, None)
        meta["preprocessing"] = pre
        echo_json("datasets", {"dataset": {**info, "meta": meta}})
        return
    rows = [[k, "-" if v is None else (", ".join(map(str, v)) if isinstance(v, list) else str(v))]
            for k, v in info.items()]
    for k in ("source", "license", "citation"):
        if ds.meta.get(k):
            rows.append([k, str(ds.meta[k])])
    _print_table(rows, ("field", "value"), wrap=("value",))


@datasets.command("download")
@click.argument("name", type=click.Choice(["fsdd"]))
@click.option("--out", "--dest", "dest", type=click.Path(file_okay=False), default=None,
              help="Install into OUT/recordings [default: the user cache, ~/.cache/edgeseq/fsdd].")
@click.option("--url", default=None, help="Archive URL (http(s):// or file://); default: the v1.0.10 release tarball.")
@click.option("--force", is_flag=True, help="Download again even if the recordings are already there.")
@json_option()
def download(name: str, dest: str | None, url: str | None, force: bool, as_json: bool) -> None:
    """Download a data set that is not bundled (FSDD, CC BY-SA 4.0) into the cache or DEST."""
    from edgeseq.datasets import fsdd

    target = fsdd.download_fsdd(dest, url or fsdd.DEFAULT_URL, force=force)
    n = sum(1 for _ in target.glob("*.wav"))
    if as_json:
        echo_json("datasets", {"downloaded": name, "recordings": n, "path": str(target), "license": fsdd.LICENSE})
        return
    click.echo(f"fsdd: {n} recordings in {target} (license {fsdd.LICENSE}; cite: {fsdd.CITATION})")
