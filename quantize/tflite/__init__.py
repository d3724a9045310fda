"""The .tflite file: `reader` (the one checked reader), `flatbuffer` (the loader-level verifier), `verify`
(structural checks of the graph) and `edit` (small math-preserving edits, conversion child only).
"""
