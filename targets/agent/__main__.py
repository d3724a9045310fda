"""`python -m edgeseq.targets.agent`: the agent's command line, run from the source tree (the zipapp's own entry,
written by edgeseq.targets.agent_build, calls the same `main`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
