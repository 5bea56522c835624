"""Render the Grafana dashboards' panels into PNGs from a real Prometheus (matplotlib).

Screenshot-like evidence without a Grafana: the same grid, the same queries with Grafana's
variables substituted (see dashcheck.py), the same units and thresholds.

    # a demo: own database, API, worker, Prometheus and traffic; writes grafana/screenshots/
    PYTHONPATH=project:. .venv/bin/python grafana/render.py --demo --seconds 90
    # from a Prometheus you already run (the compose stack's), the last 15 minutes
    PYTHONPATH=project:. .venv/bin/python grafana/render.py --prometheus http://127.0.0.1:9090
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from grafana.dashcheck import (
    DASHBOARDS_DIR,
    GRAFANA_DIR,
    RULES_DIR,
    LocalPrometheus,
    Prometheus,
    PrometheusError,
    ScrapeTarget,
    Series,
    grafana_variables,
    load_dashboards,
    substitute,
)

SCREENSHOTS_DIR = GRAFANA_DIR / "screenshots"
# Grafana's dark theme.
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a"]
COLORS = {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c", "yellow": "#fade2a"}
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
ROW_UNIT_INCHES = 0.34  # one grid row (30 px in Grafana)
WIDTH_INCHES = 18.0


def format_value(value: float, unit: str | None, decimals: int | None = None) -> str:
    if not math.isfinite(value):
        return "NaN"
    if unit == "s":
        if abs(value) < 1:
            return f"{value * 1000:.{1 if abs(value) < 0.01 else 0}f} ms"
        return f"{value:.2f} s"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    suffix = {"reqps": " req/s", "ops": " ops/s"}.get(unit or "", "")
    if decimals is not None:
        return f"{value:.{decimals}f}{suffix}"
    if value == int(value):
        return f"{int(value)}{suffix}"
    return f"{value:.3g}{suffix}"


def legend_name(fmt: str, labels: Mapping[str, str]) -> str:
    if not fmt or fmt == "__auto":
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    # A label the series lacks (e.g. `or vector(0)`) is empty, as in Grafana.
    return LEGEND.sub(lambda m: labels.get(m.group(1), ""), fmt).strip() or "value"


def threshold_steps(panel: Mapping[str, Any]) -> list[tuple[float | None, str]]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    steps = defaults.get("thresholds", {}).get("steps", [])
    return [
        (s.get("value"), COLORS.get(s.get("color", ""), s.get("color", "green"))) for s in steps
    ]


def threshold_color(panel: Mapping[str, Any], value: float) -> str:
    color = COLORS["green"]
    for limit, step_color in threshold_steps(panel):
        if limit is None or value >= limit:
            color = step_color
    return color


def query_panel(
    prom: Prometheus,
    panel: Mapping[str, Any],
    variables: Mapping[str, str],
    window: tuple[float, float, float],
) -> list[tuple[str, Series]]:
    start, end, step = window
    results: list[tuple[str, Series]] = []
    for target in panel.get("targets", []):
        expr = substitute(str(target["expr"]), variables)
        for series in prom.query_range(expr, start, end, step):
            results.append((legend_name(target.get("legendFormat", ""), series.labels), series))
    return results


def style_axes(ax: Axes) -> None:
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(colors=TEXT, labelsize=7, length=0)


def draw_timeseries(
    ax: Axes,
    panel: Mapping[str, Any],
    data: list[tuple[str, Series]],
    *,
    xlim: tuple[float, float],
) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit")
    for i, (name, series) in enumerate(data[:12]):
        points = series.points
        times = [t for t, _ in points]
        ax.plot(times, [v for _, v in points], color=PALETTE[i % len(PALETTE)], lw=1.4, label=name)
    if defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode") == "line":
        for limit, color in threshold_steps(panel):
            if limit is not None:
                ax.axhline(limit, color=color, lw=1, ls="--")
    ax.set_xlim(*xlim)
    low, high = ax.get_ylim()
    low = defaults.get("min", low)
    high = defaults.get("max", high)
    # A little room, so a line at the minimum or the maximum stays visible (as in Grafana).
    pad = (high - low) * 0.04 or 0.05
    ax.set_ylim(low - pad, high + pad)
    ax.grid(color=GRID, lw=0.5)
    ax.xaxis.set_major_formatter(lambda v, _: f"{datetime.fromtimestamp(v):%H:%M:%S}")
    ax.yaxis.set_major_formatter(lambda v, _: format_value(v, unit))
    if data:
        legend = ax.legend(
            loc="best", fontsize=6, ncol=2, facecolor=PANEL, edgecolor=GRID, framealpha=0.8
        )
        for text in legend.get_texts():
            text.set_color(TEXT)


def last_value(series: Series) -> float:
    finite = series.finite()
    return finite[-1][1] if finite else math.nan


def draw_stat(ax: Axes, panel: Mapping[str, Any], data: list[tuple[str, Series]]) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    value = last_value(data[0][1])
    ax.set_facecolor(threshold_color(panel, value) if math.isfinite(value) else PANEL)
    points = data[0][1].finite()
    if points:
        ax.fill_between(range(len(points)), [v for _, v in points], color="white", alpha=0.15, lw=0)
    ax.text(
        0.5,
        0.45,
        format_value(value, defaults.get("unit"), defaults.get("decimals")),
        color="white",
        fontsize=26,
        fontweight="bold",
        ha="center",
        va="center",
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def draw_bargauge(ax: Axes, panel: Mapping[str, Any], data: list[tuple[str, Series]]) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    rows = [(name, last_value(series)) for name, series in data]
    names = [name for name, _ in rows]
    values = [0.0 if not math.isfinite(v) else v for _, v in rows]
    colors = [threshold_color(panel, v) for v in values]
    ax.barh(names, values, color=colors)
    for i, v in enumerate(values):
        ax.text(
            v,
            i,
            " " + format_value(v, defaults.get("unit"), 0),
            color=TEXT,
            va="center",
            fontsize=8,
        )
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_xlim(0, max(values) * 1.15 or 1)
    ax.tick_params(axis="y", labelsize=8, colors=TEXT)


def render_dashboard(
    prom: Prometheus,
    dashboard: Mapping[str, Any],
    out: Path,
    *,
    start: float,
    end: float,
    rate_interval: str,
    step: float,
) -> Path:
    """Draw every panel of `dashboard` from `prom` over [start, end] into the PNG `out`."""
    variables = grafana_variables(
        dashboard,
        rate_interval=rate_interval,
        interval=f"{step:g}s",
        range_seconds=int(end - start),
    )
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height = rows * ROW_UNIT_INCHES + 0.8
    fig: Figure = plt.figure(figsize=(WIDTH_INCHES, height), facecolor=BACKGROUND)
    span = f"{datetime.fromtimestamp(start):%H:%M:%S} - {datetime.fromtimestamp(end):%H:%M:%S}"
    fig.text(
        0.01,
        1 - 0.35 / height,
        f"{dashboard['title']}   ({span}, rendered from Prometheus by grafana/render.py)",
        color=TEXT,
        fontsize=12,
        fontweight="bold",
        va="center",
    )
    top = 0.75 / height  # the title's band, as a fraction of the figure
    inch_x, inch_y = 1 / WIDTH_INCHES, 1 / height
    for panel in panels:
        grid = panel["gridPos"]
        left = grid["x"] / 24 + 0.05 * inch_x
        width = grid["w"] / 24 - 0.1 * inch_x
        if panel["type"] == "row":
            y = 1 - top - (grid["y"] + 0.5) / rows * (1 - top)
            fig.text(
                left, y, panel["title"], color=TEXT, fontsize=11, fontweight="bold", va="center"
            )
            continue
        bottom = 1 - top - (grid["y"] + grid["h"]) / rows * (1 - top) + 0.05 * inch_y
        h = grid["h"] / rows * (1 - top) - 0.1 * inch_y
        # The panel: a background with its title; the chart inside leaves room for the labels.
        frame = fig.add_axes((left, bottom, width, h))
        frame.set_facecolor(PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(GRID)
        frame.text(0.1 / (width * WIDTH_INCHES), 1 - 0.17 / (h * height),
                   panel["title"], color=TEXT, fontsize=9, fontweight="bold", va="center",
                   transform=frame.transAxes)  # fmt: skip
        margins = {  # left, right, top, bottom, in inches
            "timeseries": (0.85, 0.15, 0.35, 0.3),
            "stat": (0.1, 0.1, 0.35, 0.1),
            "bargauge": (1.5, 0.6, 0.35, 0.15),
        }.get(panel["type"], (0.85, 0.15, 0.35, 0.3))
        ax = fig.add_axes(
            (
                left + margins[0] * inch_x,
                bottom + margins[3] * inch_y,
                width - (margins[0] + margins[1]) * inch_x,
                h - (margins[2] + margins[3]) * inch_y,
            )
        )
        style_axes(ax)
        try:
            data = query_panel(prom, panel, variables, (start, end, step))
        except PrometheusError as exc:
            data = []
            ax.text(0.5, 0.5, f"query error:\n{exc}"[:200], color=COLORS["red"], fontsize=7,
                    ha="center", va="center", transform=ax.transAxes, wrap=True)  # fmt: skip
        if not any(series.finite() for _, series in data):
            ax.set_facecolor(PANEL)
            ax.text(0.5, 0.5, "No data", color=TEXT, fontsize=12, ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
        elif panel["type"] == "stat":
            draw_stat(ax, panel, data)
        elif panel["type"] == "bargauge":
            draw_bargauge(ax, panel, data)
        else:
            draw_timeseries(ax, panel, data, xlim=(start, end))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, facecolor=BACKGROUND)
    plt.close(fig)
    return out


def render_all(
    prom: Prometheus, out_dir: Path, *, start: float, end: float, rate_interval: str, step: float
) -> list[Path]:
    return [
        render_dashboard(
            prom,
            dashboard,
            out_dir / f"{Path(name).stem}.png",
            start=start,
            end=end,
            rate_interval=rate_interval,
            step=step,
        )
        for name, dashboard in load_dashboards(DASHBOARDS_DIR).items()
    ]


@contextlib.contextmanager
def demo_stack(workdir: Path, *, slowdown: float) -> Iterator[tuple[str, int, Any]]:
    """Own database, Redis prefix and queue; migrate; start a worker (2 processes) and the API.

    `slowdown`: seconds each job sleeps (devtools.faults), so that a burst builds a queue a
    scrape can see on a small machine.
    """
    from devtools.faults import Faults
    from devtools.launch import free_port, start_api, start_worker

    from imgproc.config import Settings
    from imgproc.migrate import migrate_storage, upgrade
    from shared.testing.namespaces import delete_redis_prefix, temporary_database

    base = Settings()
    run = uuid.uuid4().hex[:8]
    with temporary_database(base.database_url, run, suffix="_dashboards") as url:
        settings = base.model_copy(
            update={
                "database_url": url,
                "redis_prefix": f"{base.redis_prefix}dash{run}:",
                "celery_queue": f"imgproc.dash{run}",
                "data_dir": workdir / "data",
                "prometheus_multiproc_dir": workdir / "prom",
                "worker_metrics_port": free_port(),
                "log_json": True,
            }
        )
        upgrade(url)
        migrate_storage(settings.data_dir)
        port = free_port()
        faults = Faults(slowdown_seconds=slowdown) if slowdown else None
        worker = start_worker(settings, workdir / "worker.log", concurrency=2, faults=faults)
        try:
            api = start_api(settings, workdir / "api.log", port=port)
            try:
                yield f"127.0.0.1:{port}", settings.worker_metrics_port, settings
            finally:
                api.stop()
        finally:
            worker.stop()
            delete_redis_prefix(settings.redis_url, settings.redis_prefix)


def run_demo(seconds: float, out_dir: Path, *, slowdown: float) -> list[Path]:
    import httpx

    from grafana.traffic import drive, wait_final

    with (
        tempfile.TemporaryDirectory(prefix="dashboards-") as tmp,
        demo_stack(Path(tmp), slowdown=slowdown) as (api, worker_port, _),
    ):
        targets = [
            ScrapeTarget("imgproc-api", api),
            ScrapeTarget("imgproc-worker", f"127.0.0.1:{worker_port}"),
        ]
        rules = sorted(RULES_DIR.glob("*.yml"))
        with LocalPrometheus(targets, rule_files=rules) as local:
            prom = Prometheus(local.url)
            start = time.time()
            with httpx.Client(base_url=f"http://{api}", timeout=30) as client:
                rounds = max(4, int(seconds / 1.5))
                traffic = drive(
                    client,
                    rounds=rounds,
                    pause=1.0,
                    size=(1280, 960),
                    burst_every=max(2, rounds // 4),
                    burst=40,
                )
                counts = wait_final(client, traffic, timeout=120)
            time.sleep(8)  # the last jobs reach a scrape and the rate windows
            end = time.time()
            print(  # noqa: T201 (a command-line tool)
                f"sent {sum(traffic.by_operation.values())} jobs {traffic.by_operation}, "
                f"{traffic.repeats} repeats, {traffic.refused} refused; final: {counts}"
            )
            try:
                return render_all(prom, out_dir, start=start, end=end, rate_interval="10s", step=1)
            finally:
                prom.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo", action="store_true", help="start a stack, drive it, render")
    source.add_argument("--prometheus", help="render from this Prometheus (URL)")
    parser.add_argument("--seconds", type=float, default=90, help="demo traffic duration")
    parser.add_argument(
        "--slowdown", type=float, default=0.02, help="demo: seconds each job sleeps (a queue)"
    )
    parser.add_argument("--minutes", type=float, default=15, help="time range with --prometheus")
    parser.add_argument("--rate-interval", default="1m", help="$__rate_interval with --prometheus")
    parser.add_argument("--out", type=Path, default=SCREENSHOTS_DIR)
    args = parser.parse_args()
    if args.demo:
        paths = run_demo(args.seconds, args.out, slowdown=args.slowdown)
    else:
        prom = Prometheus(args.prometheus)
        end = time.time()
        start = end - args.minutes * 60
        step = max(1.0, (end - start) / 300)
        paths = render_all(
            prom, args.out, start=start, end=end, rate_interval=args.rate_interval, step=step
        )
    for path in paths:
        print(f"wrote {path}")  # noqa: T201


if __name__ == "__main__":
    main()
