"""A stacked bar chart of delivery attempts by outcome, as inline SVG (no JavaScript)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from hookline.delivery.stats import Bucket
from hookline.store.statuses import Outcome

COLORS = {Outcome.DELIVERED: "#2f9e44", Outcome.RETRY: "#f08c00", Outcome.FAILED: "#e03131"}
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 180, 36, 22, 8


def attempts_chart(buckets: Sequence[Bucket], *, title: str = "Delivery attempts") -> Markup:
    """One stacked bar per bucket (delivered, retry, failed), with a <title> per segment."""
    peak = max((bucket.total for bucket in buckets), default=0) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / max(len(buckets), 1)
    bar_w = max(slot * 0.75, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH}" y2="{PAD_TOP + plot_h}" '
        'class="axis"/>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 10}" text-anchor="end" class="tick">{peak}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    for index, bucket in enumerate(buckets):
        x = PAD_LEFT + index * slot + (slot - bar_w) / 2
        y = PAD_TOP + plot_h
        for outcome in COLORS:
            count = getattr(bucket, outcome)
            if not count:
                continue
            height = plot_h * count / peak
            y -= height
            label = f"{bucket.start:%Y-%m-%d %H:%M} UTC: {count} {outcome}"
            parts.append(
                f'<rect class="bar {outcome}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{height:.1f}" fill="{COLORS[outcome]}" data-outcome="{outcome}" '
                f'data-count="{count}"><title>{escape(label)}</title></rect>'
            )
        if index % max(len(buckets) // 6, 1) == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" '
                f'class="tick">{bucket.start:%H:%M}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
