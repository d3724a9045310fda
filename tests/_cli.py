"""`edgeseq ARGS` run in this process as the console runs it, for tests that read its exit code and output."""

from __future__ import annotations


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `edgeseq ARGS`."""
    from edgeseq.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
