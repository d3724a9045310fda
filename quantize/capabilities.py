"""What each layer family can do with each recipe and form, declared as data.

One table, read before any conversion child starts (so a refusal is immediate and one line), printed by
`edgeseq models --capabilities`, and the source of the tests' expected refusals. A model's families come from its
layers (`families_of`), so the table applies to users' own models as much as to the zoo.

Forms: "batch" (the whole sequence per invoke, `edgeseq convert`) and the three streaming kinds
(`edgeseq.models.streamkind.StreamKind`, `edgeseq convert --stream`). "*" matches any recipe or form.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from edgeseq.models.streamkind import StreamKind
from edgeseq.quantize.recipes import MODES
from edgeseq.quantize.rnn_routes import ROUTE_WORDS, auto_order, auto_plans

RECIPES = (*MODES, "int8-float")  # the table's recipe axis: the modes, and int8 with --float-ops

FAMILIES = ("recurrent", "attention", "layer-norm", "bidirectional", "conv1d", "token-ids")
FORMS = ("batch", *(k.value for k in StreamKind))
NOT_LISTED = "Anything not listed converts with every recipe in every form it can stream in."


@dataclass(frozen=True)
class Capability:
    family: str
    recipe: str  # a recipe mode or "*"
    form: str  # "batch", a StreamKind value, or "*"
    supported: bool
    why: str
    fix: str = ""

    def matches(self, family: str, recipe: str, form: str) -> bool:
        """`recipe`: a Recipe's `capability` name; selective int8 (int8-float) is int8 wherever it has no row of
        its own."""
        recipes = ("*", recipe, *(("int8",) if recipe == "int8-float" else ()))
        return (self.family in ("*", family) and self.recipe in recipes and self.form in ("*", form))


TABLE: tuple[Capability, ...] = (
    *(Capability("*", "int8-float", form, False,
                 "--float-ops applies to whole-sequence files (convert without --stream) in this version",
                 "export step models with int8 or dynamic")
      for form in FORMS[1:]),
    Capability("*", "int4w", "*", True,
               "4-bit weights (ai-edge-quantizer on the fp32 graph of the same route: a WHILE loop keeps its loop, "
               "its cell's FULLY_CONNECTED weights int4 inside it, so the size stays constant in T); runs on "
               "ai-edge-litert 2.3; tflite-runtime 2.14 computes wrong outputs on it without an error, so the device "
               "agent refuses it there"),
    Capability("token-ids", "int4w", "*", True,
               "the Embedding's GATHER table stays float32 (ai-edge-quantizer 0.10 takes EMBEDDING_LOOKUP, not "
               "GATHER); the rest as for every family"),
    Capability("*", "int8-float", "batch", True,
               "int8 with the named op types (or, with auto, those whose int8 kernel is slower than float on the "
               "profiling target) kept float: TF's quantizer leaves them float with DEQUANTIZE/QUANTIZE at their "
               "edges; every int8 route below applies"),
    Capability("token-ids", "int16x8", "*", False,
               "TF 2.21's 16x8 quantizer wants a calibrated range for the int32 token-id path into the Embedding's "
               "GATHER and records none (\"Max and min for dynamic tensors should be recorded during calibration\")",
               "use int8 (the ids stay int32, the Embedding table becomes int8) or dynamic"),
    Capability("token-ids", "*", "*", True,
               "int32 ids in (batch: [1, T]; streaming: one id per step as x) in every other recipe, --io int8 "
               "included (it quantizes the output only); the Embedding table is a GATHER table quantized like any "
               "weight; out-of-vocabulary ids in the data are refused before anything runs"),
    Capability("layer-norm", "int16x8", "*", False,
               "TF 2.21 has no 16x8 kernel for NEG, which LayerNormalization lowers to "
               "(and SquaredDifference runs only in float32/int32)",
               "use int8 or dynamic"),
    Capability("attention", "int16x8", StreamKind.KV_CACHE.value, False,
               "the KV-cache step's int32 position input gets no calibrated 16x8 range on TF 2.21",
               "use int8 or dynamic"),
    # the routes, in auto's order, are rnn_routes.plan's
    Capability("recurrent", "int8", "batch", True,
               f"auto tries {auto_order('int8')}, keeping the first that passes parity: the loop (int8 inside; its "
               "state crosses the WHILE boundary as float32) and the fused UNIDIRECTIONAL_SEQUENCE_LSTM op keep the "
               "size constant in T, unrolling grows with T"),
    Capability("recurrent", "int16x8", "batch", True,
               f"auto converts by {auto_order('int16x8', ROUTE_WORDS)} only, so the file grows with T: TF 2.21's 16x8 "
               f"quantizer supports neither {' nor '.join(ROUTE_WORDS[r] for r in auto_plans()['int16x8'][0].skipped)}"),
    Capability("recurrent", "*", StreamKind.RECURRENT_STEP.value, True,
               "one step per invoke through each layer's cell; the state is carried by the runtime"),
    Capability("attention", "*", StreamKind.KV_CACHE.value, True,
               "the zoo's causal MultiHeadSelfAttention, and keras MultiHeadAttention called with use_causal_mask=True "
               "(or a lower-triangular attention_mask) in users' functional graphs, residual blocks and learned or "
               "constant positions included (from the layer's own query/key/value/output kernels); non-causal "
               "attention is refused when the model is analysed"),
    *(Capability("conv1d", "*", form, True,
                 "Conv1D with kernel k > 1 and stride 1: a ring buffer of the last (k-1)*dilation inputs carried as "
                 "state (state_<layer>_buf); padding='causal' is exact, 'valid' delays y by (k-1)*dilation steps (the "
                 "manifest's delay_steps); padding='same' and strides > 1 are refused when the model is analysed")
      for form in (StreamKind.RECURRENT_STEP.value, StreamKind.KV_CACHE.value)),
    Capability("recurrent", "*", StreamKind.INTERNAL_STATE.value, True,
               "the step model's state moved inside it (--state internal): resource variables read at the start of "
               "the graph and assigned at its end, zeroed by CALL_ONCE; KV caches and conv ring buffers too, and "
               "--stride K frames per invoke for recurrent and conv models"),
    Capability("bidirectional", "*", StreamKind.RECURRENT_STEP.value, False,
               "a bidirectional RNN reads the sequence from its end: no output exists before the whole window",
               "retrain with bidirectional=False, or use the window baseline (--window W)"),
)


def families_of(model: Any) -> set[str]:
    """The layer families of a Keras model (nested models included)."""
    import keras

    found: set[str] = set()
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        name = type(layer).__name__
        if isinstance(layer, keras.layers.Bidirectional):
            found.update(("bidirectional", "recurrent"))
        elif isinstance(layer, keras.layers.RNN):
            found.add("recurrent")
        elif "Attention" in name:
            found.add("attention")
        if name == "LayerNormalization":
            found.add("layer-norm")
        if isinstance(layer, keras.layers.Conv1D):
            found.add("conv1d")
        found.update(getattr(layer, "edgeseq_families", None) or ())  # a SavedModel's: read from its graph
        if isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 2 and \
                str(layer.output.dtype).startswith(("int", "uint")):
            found.add("token-ids")  # int ids [batch, time] into an Embedding
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
        elif isinstance(getattr(layer, "layer", None), keras.layers.Layer):
            stack.append(layer.layer)  # wrappers: TimeDistributed, Bidirectional
    return found


def refusal(families: Iterable[str], recipe: str, form: str) -> Capability | None:
    """The first declared limit that forbids `recipe` in `form` for any of `families`, or None."""
    for fam in (*families, "*"):
        for cap in TABLE:
            if not cap.supported and cap.matches(fam, recipe, form):
                return cap
    return None


def rows() -> list[dict]:
    """Every declared family x form with the recipes a verdict covers (limits before notes): what
    `edgeseq models --capabilities` prints. Anything not listed converts with every recipe in every form."""
    out: list[dict] = []
    for fam in ("*", *FAMILIES):
        own = [c for c in TABLE if c.family == fam]  # rows for every family ("*") are listed once, first
        for form in FORMS:
            verdicts: dict[Capability, list[str]] = {}
            for recipe in RECIPES:
                if fam != "*" and refusal((), recipe, form) is not None:
                    continue  # refused for every family: said once, in the "*" rows
                cap = (next((c for c in own if not c.supported and c.matches(fam, recipe, form)), None)
                       or next((c for c in own if c.supported and c.matches(fam, recipe, form)), None))
                if cap is not None:
                    verdicts.setdefault(cap, []).append(recipe)
            for cap, recipes in verdicts.items():
                out.append({**asdict(cap), "form": form, "recipe": ",".join(recipes)})
    return out


def render_rows(table: list[dict]) -> str:
    """Plain-text table of `rows()`."""
    head = ("family", "form", "recipes", "verdict", "why / how")
    cells = [("every family" if r["family"] == "*" else r["family"], r["form"], r["recipe"], "yes" if r["supported"] else "refused",
              r["why"] + (f"; {r['fix']}" if r["fix"] else "")) for r in table]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head[:-1])]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in [head, *cells]]
    return "\n".join(lines) + "\n" + NOT_LISTED
