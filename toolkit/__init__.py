"""edgeseq: should this sequence model ship as an RNN or a compact Transformer, and in which numeric format?

The package root stays import-light: `edgeseq --help`, `inspect`, `profile` and `report` must not import TensorFlow.
"""

__version__ = "0.1.0"
