"""Per-frame rules of the graph walk: 2-D convolutions over [time, frequency] (the kws_streaming approach).

A tensor [batch, T, F, C] whose first spatial axis is time streams as one frame (B, 1, F, C) per step:
- Conv2D / DepthwiseConv2D with kernel kt > 1 in time and stride 1 in time keep a ring buffer of their last
  (kt-1)*dt input frames as state `state_<layer>_buf` (1, (kt-1)*dt, F, C), fed back like an RNN state; the step
  convolves the buffer plus the new frame (valid in time, the layer's own padding, stride and dilation in
  frequency). padding="valid" delays the output by (kt-1)*dt steps (a `state_<layer>_fill` ring gates every state
  downstream, as for Conv1D), and a ZeroPadding2D(((kt-1)*dt, 0), ...) before it makes it causal (the zero buffer is
  the padding). A kernel of 1 in time is a per-frame layer;
- Reshape layers that keep the time axis ([B, T, F] -> [B, T, F, 1], [B, T', F', C] -> [B, T', F'*C]) apply to
  each frame; MaxPooling2D / AveragePooling2D with pool size and stride 1 in time pool the frequency axis of each
  frame; ZeroPadding2D pads frequency per frame.
Strides over 1 in time emit one output every s steps while a step model emits one per step: refused with the
reason (retrain with stride 1 in time and subsample after, or use --window W), as are padding="same" in time (it looks
at future frames) and pooling over time. Mixed into edgeseq.models.graph.plan's walker beside rules._LayerRules.
"""

from __future__ import annotations

import math
from typing import Any

from edgeseq.models.graph.rules import _Meta, _Rec, _refuse

CONV2D = {"Conv2D", "DepthwiseConv2D"}
POOL2D = {"MaxPooling2D", "AveragePooling2D"}
FRAME = {"Reshape", "ZeroPadding2D", *CONV2D, *POOL2D}
STRIDE_HINT = ("retrain with strides=1 in time (subsample the output afterwards, or feed every s-th frame), or "
               "measure the sliding-window baseline with --window W")


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _FrameRules:
    """The per-frame half of the walk (mixed into graph.plan._Walker)."""

    def _frame(self, node: Any, op: Any, m: _Meta) -> tuple[_Rec, _Meta]:
        kind = type(op).__name__
        if not m.time:
            raise _refuse(self.name, op, "its input has no time axis")
        if getattr(op, "data_format", "channels_last") not in ("channels_last", None):
            raise _refuse(self.name, op, "edgeseq streams channels_last 2-D layers (time is the first spatial axis)")
        if kind == "Reshape":
            return self._reshape(node, op, m)
        if kind == "ZeroPadding2D":
            (top, bottom), _ = op.padding
            if bottom:
                raise _refuse(self.name, op, f"it pads {bottom} future frames at the end of the time axis")
            return _Rec("frame", info={"time_pad": int(top)}), _Meta(True, m.delay, m.gate, tpad=m.tpad + int(top))
        if kind in POOL2D:
            (pt, _), (st, _) = _pair(op.pool_size), _pair(op.strides)
            if pt != 1 or st != 1:
                raise _refuse(self.name, op, f"it pools {pt} neighbouring time steps with stride {st}; edgeseq "
                                             "streams pooling over the frequency axis only (pool size 1 in time)",
                              STRIDE_HINT)
            return _Rec("layer"), m
        return self._conv2d(op, m)

    def _reshape(self, node: Any, op: Any, m: _Meta) -> tuple[_Rec, _Meta]:
        shape_in, shape_out = node.input_tensors[0].shape, node.outputs[0].shape
        if shape_in[1] is None or shape_out[1] != shape_in[1] or any(d is None for d in (*shape_in[2:], *shape_out[2:])):
            raise _refuse(self.name, op, f"it reshapes {list(shape_in[1:])} to {list(shape_out[1:])}, which does not "
                                         "keep the time axis (each frame reshaped on its own)")
        if math.prod(shape_in[2:]) != math.prod(shape_out[2:]):  # pragma: no cover - Keras checks sizes itself
            raise _refuse(self.name, op, "it moves values between frames")
        return _Rec("reshape", info={"frame": [int(d) for d in shape_out[2:]]}), m

    def _conv2d(self, op: Any, m: _Meta) -> tuple[_Rec, _Meta]:
        (kt, _), (st, _), (dt, _) = _pair(op.kernel_size), _pair(op.strides), _pair(op.dilation_rate)
        if st != 1:
            raise _refuse(self.name, op, f"strides={st} in time emits one output every {st} steps, while a step "
                                         "model emits an output at every step", STRIDE_HINT)
        if getattr(op, "groups", 1) != 1:
            raise _refuse(self.name, op, "edgeseq streams Conv2D layers with groups=1")
        span = (kt - 1) * dt
        if kt == 1:
            if m.tpad:
                raise _refuse(self.name, op, "a kernel of 1 in time after a ZeroPadding2D that pads time")
            return _Rec("layer"), m
        if op.padding == "same":
            raise _refuse(self.name, op, f"padding='same' with a kernel of {kt} in time looks at future frames, so a "
                                         "step's output is not final until later frames arrive",
                          f"pad time causally with ZeroPadding2D((({span}, 0), (0, 0))) before a padding='valid' "
                          "Conv2D, or use padding='valid' (a delay), or --window W")
        if m.tpad not in (0, span):
            raise _refuse(self.name, op, f"the ZeroPadding2D before it pads {m.tpad} frames in time; edgeseq streams "
                                         f"no padding (a delay) or exactly (kernel - 1) x dilation = {span} (causal)")
        causal = m.tpad == span
        self._own(op)
        frame = [int(d) for d in op.input.shape[2:]]  # (after a ZeroPadding2D: its frequency-padded frame)
        self.carried.append((f"state_{op.name}_buf", (span, *frame)))
        if not causal:
            self.carried.append((f"state_{op.name}_fill", (span,)))
        gate = m.gate | (set() if causal else {op.name})
        info = {"span": span, "valid": not causal, "gate": m.gate, "depthwise": type(op).__name__ == "DepthwiseConv2D"}
        return _Rec("conv2d", info=info), _Meta(True, m.delay + (0 if causal else span), frozenset(gate))
