"""Point labels that never overlap: a small deterministic placement pass for the report's scatter plots.

    place_labels(ax, [(x, y), ...], ["gru-fp32", ...])    # after the axes' scales and limits are final

Each label tries offsets around its point, nearest first (eight directions, growing radii, in points), and takes the
first whose box meets no label placed before it and no other point's marker, inside the axes if it can; one placed
away from its point gets a thin leader line. Same input, same picture (no randomness, no iteration to convergence);
nothing to install (adjustText is not a dependency). Boxes are measured with the figure's own renderer, in display
units, which scale with the DPI as the offsets and fonts do, so a figure saved at another DPI keeps them apart.
"""

from __future__ import annotations

import math

# unit directions, tried in this order at every radius: up-right first (where the plots used to put every label)
DIRECTIONS = ((1, 0.6), (1, -0.6), (-1, 0.6), (-1, -0.6), (0, 1), (0, -1), (1, 0), (-1, 0))
RADII = (5, 9, 14, 20, 28, 38, 50, 65, 85, 110, 140, 180, 230, 300)
PAD_PX = 1.0  # space kept between two boxes
LEADER_FROM = 6  # points: a label further out than the nearest ring gets a leader line to its point


def _apart(a, b, pad: float = PAD_PX) -> bool:
    return a.x1 + pad <= b.x0 or b.x1 + pad <= a.x0 or a.y1 + pad <= b.y0 or b.y1 + pad <= a.y0


def _inside(box, frame) -> bool:
    return box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1


def place_labels(ax, points: list[tuple[float, float]], labels: list[str], fontsize: float = 7,
                 marker_pt: float = 6) -> list:
    """Annotate every (x, y) data point with its label, no two labels' boxes intersecting; returns the annotations
    (in the order given). Call it once the axes' scales and limits are set: it freezes autoscaling."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import Bbox

    fig = ax.figure
    ax.get_xlim(), ax.get_ylim()  # settles the pending autoscale first: the limits the points are placed against
    ax.set_autoscale_on(False)  # leader lines must not move them
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    frame = ax.get_window_extent(renderer)
    xy_px = [tuple(ax.transData.transform((x, y))) for x, y in points]
    half = marker_pt * px_per_pt / 2
    markers = [Bbox.from_extents(px - half, py - half, px + half, py + half) for px, py in xy_px]
    order = sorted(range(len(points)), key=lambda i: (-xy_px[i][1], xy_px[i][0], labels[i]))  # top to bottom
    placed: list = []
    out: dict[int, object] = {}
    for i in order:
        ann = ax.annotate(labels[i], points[i], textcoords="offset points", xytext=(0, 0), fontsize=fontsize)
        others = [m for j, m in enumerate(markers) if j != i]
        best = None
        for need_inside in (True, False):
            for r in RADII:
                for dx, dy in DIRECTIONS:
                    norm = math.hypot(dx, dy)
                    ann.xyann = (r * dx / norm, r * dy / norm)
                    ann.set_ha("left" if dx > 0 else "right" if dx < 0 else "center")
                    ann.set_va("bottom" if dy > 0 else "top" if dy < 0 else "center")
                    box = ann.get_window_extent(renderer)
                    if need_inside and not _inside(box, frame):
                        continue
                    if all(_apart(box, b) for b in placed) and all(_apart(box, m, 0.0) for m in others):
                        best = (r, box)
                        break
                if best:
                    break
            if best:
                break
        if best is None:  # crowded beyond every radius: stack it below the lowest label, clear of the rest
            low = min([b.y0 for b in placed] + [frame.y0])
            ann.xyann = (0, (low - xy_px[i][1]) / px_per_pt - 10)
            ann.set_ha("center")
            ann.set_va("top")
            best = (math.inf, ann.get_window_extent(renderer))
        r, box = best
        placed.append(box)
        out[i] = ann
        if r > LEADER_FROM:
            tx = box.x0 if box.x0 > xy_px[i][0] else box.x1 if box.x1 < xy_px[i][0] else (box.x0 + box.x1) / 2
            ty = box.y0 if box.y0 > xy_px[i][1] else box.y1 if box.y1 < xy_px[i][1] else (box.y0 + box.y1) / 2
            end = ax.transData.inverted().transform((tx, ty))
            ax.add_artist(Line2D([points[i][0], end[0]], [points[i][1], end[1]], lw=0.5, color="0.55", zorder=1))
    return [out[i] for i in range(len(points))]
