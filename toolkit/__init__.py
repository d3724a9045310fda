"""edgeseq: should this sequence model ship as an RNN or a compact Transformer, and in which numeric format?

The package root stays import-light: `edgeseq --help`, `inspect`, `profile` and `report` must not import TensorFlow.
"""

import logging as _logging
import os as _os

# TensorFlow's C++ start-up chatter (CPU feature notices, absl preamble) would break the one-line error contract on
# stderr. Quiet by default; a user who wants it sets TF_CPP_MIN_LOG_LEVEL themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# ...and the lines that variable does not reach (absl's preamble, oneDNN's notice): see edgeseq.core.fsio.tfquiet.
from edgeseq.core.fsio import tfquiet as _tfquiet  # noqa: E402

_tfquiet.install()
# Its Python logger repeats retracing advice on every predict() over a new shape; edgeseq's own messages suffice.
_logging.getLogger("tensorflow").setLevel(_logging.ERROR)

__version__ = "0.1.0"
