"""The figures where people look: a table on stdout, JSON and a chart under var/bench/."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.measures import Check, Measure


def table(checks: list[Check]) -> str:
    lines = [f"{'measure':15s} {'comparison':62s} {'ratio':>7s}  {'target':8s} met"]
    for check in checks:
        target = f"{check.target[0]} {check.target[1]:g}" if check.target else "-"
        met = {True: "yes", False: "NO", None: "-"}[check.met]
        lines.append(f"{check.measure:15s} {check.what:62s} {check.ratio:7.2f}  {target:8s} {met}")
    return "\n".join(lines)


def figures_text(measures: list[Measure]) -> str:
    lines = []
    for measure in measures:
        lines.append(f"{measure.title}:")
        for variant, figures in measure.figures().items():
            shown = ", ".join(f"{key} {value:g}" for key, value in figures.items())
            lines.append(f"  {variant:32s} {shown}")
    return "\n".join(lines)


def write_json(path: Path, context: dict, measures: list[Measure], checks: list[Check]) -> None:
    document = {
        **context,
        "checks": [check.as_dict() for check in checks],
        "measures": {
            measure.name: {"title": measure.title, "medians": measure.figures()}
            for measure in measures
        },
    }
    path.write_text(json.dumps(_no_nan(document), indent=2, allow_nan=False) + "\n")


def _no_nan(value: object) -> object:
    """NaN (no request answered, so no latency) becomes null, which JSON has."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_no_nan(item) for item in value]
    return value


def write_chart(path: Path, title: str, checks: list[Check], classes: Measure | None) -> None:
    """Each ratio against its target; and the worker classes' req/s and p99."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    panels = 2 if classes is not None and classes.samples else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels + 2, 0.5 * len(checks) + 2.5))
    axes = list(axes) if panels > 1 else [axes]
    shown = [check for check in checks if not math.isnan(check.ratio)]
    ax = axes[0]
    labels = [f"{check.measure}: {check.what}" for check in shown]
    colours = [
        {True: "tab:green", False: "tab:red", None: "tab:gray"}[check.met] for check in shown
    ]
    positions = range(len(shown))
    ax.barh(positions, [check.ratio for check in shown], color=colours)
    for position, check in zip(positions, shown, strict=True):
        if check.target is not None:
            ax.plot([check.target[1]] * 2, [position - 0.4, position + 0.4], color="black")
    ax.set_yticks(list(positions), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ratio (black mark: target; green met, red not met)")
    ax.set_title("Ratios measured side by side", fontsize=10)
    if panels > 1:
        assert classes is not None
        ax = axes[1]
        medians = classes.figures()
        names = sorted({variant.split(" @")[0] for variant in medians})
        for name in names:
            points = sorted(
                (int(variant.split("@")[1]), figures)
                for variant, figures in medians.items()
                if variant.startswith(f"{name} @")
            )
            ax.plot(
                [c for c, _ in points], [f["p99_ms"] for _, f in points], marker="o", label=name
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel("p99 latency (ms)")
        ax.set_title("Worker classes: p99 by concurrency", fontsize=10)
        ax.legend()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
