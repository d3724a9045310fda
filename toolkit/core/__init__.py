"""The foundation: typed errors and exit codes, file and process I/O (fsio), statistics, task metrics.

Imported by every layer; imports nothing of edgeseq above it. Data sets live beside it in `edgeseq.datasets`.
"""
