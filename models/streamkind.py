"""The ways a sequence model serves a stream, named once.

Every layer uses these names: the step-model builders in `models`, the stream exports and their manifests in
`quantize` (`stream.kind`), the agent's JSON (`stream.kind`; the agent is standalone, so it spells the values out and
a test checks they are these), the results store, the reports and the README. A kind travels in manifests and
results, never parsed back out of a file name.
"""

from __future__ import annotations

from enum import Enum


class StreamKind(str, Enum):
    RECURRENT_STEP = "recurrent-step"  # one step per invoke, the recurrent state carried between invokes
    KV_CACHE = "kv-cache"  # one attention step per invoke, keys/values of earlier steps kept in a cache
    WINDOW = "window"  # the whole window re-run for every new step (any model: the baseline)
    # the state (recurrent state, KV cache, conv ring buffers) kept inside the model, in resource variables
    # initialised by CALL_ONCE: the host writes the input, invokes and reads the output (edgeseq's --state internal,
    # kws_streaming's internal-state mode, microWakeWord's published models)
    INTERNAL_STATE = "internal-state"

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        """What tables and plots call it."""
        return _LABELS[self]

    def file_part(self, size: int | None) -> str:
        """The part of an export's file name: 'step', 'kv<capacity>', 'win<W>' (a name, never parsed back). A model
        with its state inside is named by the form it was exported from (`internal_part`)."""
        if self in (StreamKind.RECURRENT_STEP, StreamKind.INTERNAL_STATE):
            return "step"
        return f"{'kv' if self is StreamKind.KV_CACHE else 'win'}{int(size or 0)}"

    @classmethod
    def parse(cls, value: object) -> StreamKind:
        """A kind from its value, its label, or the names older manifests and stored rows used."""
        if isinstance(value, StreamKind):
            return value
        text = str(value).strip().lower()
        kind = _ALIASES.get(text)
        if kind is None:
            raise ValueError(f"unknown stream kind {value!r}: one of {', '.join(k.value for k in cls)}")
        return kind


_LABELS = {StreamKind.RECURRENT_STEP: "recurrent state", StreamKind.KV_CACHE: "kv cache",
           StreamKind.WINDOW: "window recompute", StreamKind.INTERNAL_STATE: "state inside"}
_ALIASES = {
    **{k.value: k for k in StreamKind},
    **{label: k for k, label in _LABELS.items()},
    # names used before edgeseq 0.2 (export specs, agent modes, analysis results), still read from old files
    "step": StreamKind.RECURRENT_STEP, "recurrent": StreamKind.RECURRENT_STEP,
    "kv": StreamKind.KV_CACHE, "transformer": StreamKind.KV_CACHE,
    "internal": StreamKind.INTERNAL_STATE, "state-inside": StreamKind.INTERNAL_STATE,
}
