"""Turning harness results into the document's tables: terminal (Rich) and Markdown."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = [
    "DOC_QUICK_REFERENCE",
    "SYSTEM_ORDER",
    "fairness_note",
    "latency_label",
    "markdown_report",
    "quick_pick",
    "quick_reference_rows",
]

# The Quick Reference table of the performance document (Rust, 8 cores), read from
# the document's figures: (title, throughput, p95, memory, CPU) per system.
_QR_ORDER = {
    "chaos_engine": "Chaos Engine",
    "contract_compiler": "Contract Compiler",
    "auto_learner": "Auto Learner",
    "semantic_lattice": "Semantic Lattice",
    "cloud_kernel": "Cloud Kernel",
    "parallel_framework": "Parallel Framework",
    "symbolic_modeler": "Symbolic Modeler",
    "pipeline_engine": "Pipeline Engine",
    "attestation_authority": "Attestation Authority",
    "autoblocker_ledger": "Autoblocker Ledger",
}


def _doc_quick_reference() -> dict[str, tuple[str, str, str, str, str]]:
    from tenfold.core._docfigures import doc_row

    out = {}
    for key, title in _QR_ORDER.items():
        row = doc_row("Quick Reference", "", title) or {}
        out[key] = (
            title,
            row.get("Throughput", "-"),
            row.get("Latency (p95)", "-"),
            row.get("Memory", "-"),
            row.get("CPU", "-"),
        )
    return out


DOC_QUICK_REFERENCE: dict[str, tuple[str, str, str, str, str]] = _doc_quick_reference()

SYSTEM_ORDER = ["core", *DOC_QUICK_REFERENCE]


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}K"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.3g}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f} ns"
    if value < 1:
        return f"{value * 1e3:.1f} μs"
    if value < 1000:
        return f"{value:.2f} ms"
    return f"{value / 1000:.2f} s"


def _seed_text(seed: dict[str, Any] | None) -> str:
    if not seed:
        return "-"
    parts = []
    if "ops_per_s" in seed:
        parts.append(f"{fmt_rate(seed['ops_per_s'])}/s")
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        if key in seed:
            parts.append(f"{key[:3]} {fmt_ms(seed[key])}")
    parts.extend(
        f"{k} {v}" for k, v in seed.items() if k not in {"ops_per_s", "p50_ms", "p95_ms", "p99_ms"}
    )
    return ", ".join(parts)


LATENCY_LABELS = {
    "per_unit": "per unit",
    "per_unit_mean": "mean per unit",
    "per_batch": "per batch",
    "per_call": "per call",
}


def latency_label(sc: dict[str, Any]) -> str:
    """What the row's latencies time, e.g. "per unit", "mean per unit (50,000/call)", "per call"."""
    kind = sc.get("latency_kind")
    if kind is None:
        return "unlabelled"
    text = LATENCY_LABELS.get(str(kind), str(kind))
    if kind == "per_unit_mean" and sc.get("units_per_call"):
        text += f" ({sc['units_per_call']:,}/call)"
    if kind in ("per_batch", "per_unit_mean") and sc.get("latency_unit"):
        text += f" ({sc['latency_unit']})"
    return text


def _mem(side: dict[str, Any]) -> str:
    return f"{side.get('rss_mb', 0):.0f}" if "rss_mb" in side else "-"


def _cpu(side: dict[str, Any]) -> str:
    return f"{side.get('cpu_pct', 0):.0f}%" if "cpu_pct" in side else "-"


def ratio_text(sc: dict[str, Any]) -> str:
    """The speedup (marked when not like for like), the overhead over a baseline, or "-"."""
    speed = sc.get("speedup_vs_peer")
    if isinstance(speed, int | float):
        return f"{speed:.2f}x" + ("" if sc.get("like_for_like", True) else " (not like for like)")
    if sc.get("comparison") == "overhead" and "overhead_pct" in sc:
        text = f"overhead {sc['overhead_pct']:+.0f}%"
        if sc.get("added_p50_ms") is not None:
            text += f", +{fmt_ms(max(0.0, sc['added_p50_ms']))} p50"
        return text
    if sc.get("comparison") == "no_ratio":
        return "no ratio (different work)"
    return "-"


def scenario_row(sc: dict[str, Any]) -> list[str]:
    """One scenario as table cells, ours then the peer, each side with its own memory and CPU."""
    label = sc.get("row") or sc["name"]
    if sc.get("mode") == "full":
        label += " [--full]"
    blank = [""] * (len(SCENARIO_HEADERS) - 3)
    ours_name = (sc.get("ours") or {}).get("name", "")
    if "skipped" in sc:
        return [
            label,
            ours_name,
            f"skipped: {sc['skipped']}",
            *blank[:-1],
            _seed_text(sc.get("seed")),
        ]
    if "error" in sc:
        return [
            label,
            ours_name,
            f"error: {sc['error'][:80]}",
            *blank[:-1],
            _seed_text(sc.get("seed")),
        ]
    ours = sc.get("ours") or {}
    peer = sc.get("peer") or {}
    if peer.get("error"):
        peer_cells = [peer.get("name", ""), f"n/a ({peer['error'][:60]})", "-", "-", "-"]
    elif peer:
        peer_cells = [
            peer.get("name", ""),
            fmt_rate(peer.get("ops_per_s")),
            f"{fmt_ms(peer.get('p95_ms'))} ({latency_label(peer)})",
            _mem(peer),
            _cpu(peer),
        ]
    else:
        peer_cells = ["-", "-", "-", "-", "-"]
    return [
        label,
        ours_name,
        f"{fmt_rate(sc.get('ops_per_s'))} {sc.get('unit', '')}/s",
        latency_label(sc),
        fmt_ms(sc.get("p50_ms")),
        fmt_ms(sc.get("p95_ms")),
        fmt_ms(sc.get("p99_ms")),
        str(sc.get("calls", "-")),
        _mem(ours) if ours.get("rss_mb") is not None else f"{sc.get('rss_mb', 0):.0f}",
        _cpu(ours) if ours.get("cpu_pct") is not None else f"{sc.get('cpu_pct', 0):.0f}%",
        *peer_cells,
        ratio_text(sc),
        _seed_text(sc.get("seed")),
    ]


SCENARIO_HEADERS = [
    "Operation",
    "ours",
    "rate",
    "latency",
    "p50",
    "p95",
    "p99",
    "calls",
    "MB",
    "CPU",
    "peer",
    "peer rate",
    "peer p95",
    "peer MB",
    "peer CPU",
    "speedup",
    "document (Rust, 8 cores)",
]


def quick_pick(scenarios: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row a system shows in the Quick Reference: its headline when that is like for
    like (or has no peer), else its first like-for-like row with a speedup, else the
    headline or the first row that ran. Never the row with the largest ratio as such."""
    ran = [s for s in scenarios if "ops_per_s" in s and "error" not in s]
    if not ran:
        return None
    head = next((s for s in ran if s.get("headline")), None)
    if head is not None and (head.get("like_for_like", True) or not head.get("peer")):
        return head
    fair = [s for s in ran if s.get("like_for_like", True) and "speedup_vs_peer" in s]
    if fair:
        return fair[0]
    return head or ran[0]


def quick_reference_rows(systems: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, (title, d_tp, d_p95, d_mem, d_cpu) in DOC_QUICK_REFERENCE.items():
        data = systems.get(key)
        doc = f"{d_tp} / {d_p95} / {d_mem} / {d_cpu}"
        head = quick_pick(data.get("scenarios") or []) if data else None
        if head is None or data is None:
            status = "not built yet" if data and not data.get("built") else "not run"
            if data and data.get("error"):
                status = f"error: {data['error'][:60]}"
            rows.append([title, status, "-", "-", "-", "-", "-", doc])
            continue
        peer = head.get("peer") or {}
        ours = head.get("ours") or {}
        # Only a latency measured per unit sits beside the document's p95.
        if head.get("latency_kind") == "per_unit" and head.get("p95_ms") is not None:
            p95 = fmt_ms(head.get("p95_ms"))
        elif head.get("latency_kind") is None:
            p95 = "-"
        else:
            p95 = f"n/a ({latency_label(head)})"
        speed = head.get("speedup_vs_peer")
        if isinstance(speed, int | float) and head.get("like_for_like", True):
            ratio = f"{speed:.2f}x"
        else:
            ratio = ratio_text(head)
        rows.append(
            [
                title,
                f"{fmt_rate(head['ops_per_s'])} {head['unit']}/s ({head.get('row') or head['name']};"
                f" {ours.get('name', '?')})",
                p95,
                f"{ours.get('rss_mb', head.get('rss_mb', 0)):.0f} MB",
                f"{ours.get('cpu_pct', head.get('cpu_pct', 0)):.0f}%",
                peer.get("name", "-")
                + (f" {fmt_rate(peer['ops_per_s'])}/s" if peer.get("ops_per_s") else ""),
                ratio,
                doc,
            ]
        )
    return rows


QUICK_HEADERS = [
    "System",
    "Throughput (ours; row; our side)",
    "p95 (per unit)",
    "Memory (ours, own)",
    "CPU (ours)",
    "peer",
    "speedup",
    "document: throughput / p95 / memory / CPU",
]


def fairness_note(sc: dict[str, Any]) -> str:
    """One row's fairness line: what both did, what differs, how results were checked."""
    parts = []
    if sc.get("fairness"):
        parts.append(sc["fairness"].rstrip(".") + ".")
    if sc.get("peer"):
        if sc.get("results_compared"):
            parts.append(
                f"Results compared equal by the harness on {sc['results_compared']} calls."
            )
        if sc.get("checks"):
            parts.append(f"Checked: {sc['checks'].rstrip('.')}.")
        elif sc.get("unchecked_reason"):
            parts.append(f"Not checked equal: {sc['unchecked_reason'].rstrip('.')}.")
    elif sc.get("checks"):
        parts.append(f"Checked: {sc['checks'].rstrip('.')}.")
    return " ".join(parts)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _run_text(run: dict[str, Any]) -> str:
    what = ", ".join(run.get("systems") or []) or "every system"
    if run.get("scenarios"):
        n = len(run["scenarios"])
        what += f" ({n} row{'s' if n != 1 else ''})"
    when = run.get("start", "time not recorded")
    if run.get("end"):
        end = str(run["end"])
        when += f" to {end[11:] if end[:10] == when[:10] else end}"
    load = ""
    if run.get("load_start") is not None:
        load = f", load average {run['load_start']}"
        if run.get("load_end") is not None:
            load += f" -> {run['load_end']}"
    return f"{run.get('mode', '?')} run of {what}, {when}{load}"


def _runs_text(runs: list[dict[str, Any]]) -> str:
    """When the figures were measured: each saved run, or the report's own time."""
    if not runs:
        from tenfold.core._runner import utc_now

        return f"**Run:** {utc_now()}."
    if len(runs) == 1:
        return f"**Run:** {_run_text(runs[0])}."
    return (
        "**Runs** (a later run's rows replace the same rows of an earlier one; rows from a"
        " --full run are marked [--full]): "
        + "; ".join(f"{i}. {_run_text(r)}" for i, r in enumerate(runs, 1))
        + "."
    )


def markdown_report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# tenfold benchmarks",
        "",
        "Written by `tenfold bench --report`; do not edit by hand.",
        "",
        f"**Machine:** {m['cores']} cores ({m['cpu']}), {m.get('memory_gib', '?')} GiB, "
        f"Python {m['python']}, Linux {m.get('kernel', '?')}. **Mode:** {result.get('mode', '?')}. "
        + _runs_text(result.get("runs") or []),
        "",
        "Ours and the peer run on the same input in the same process, interleaved (A B, B A, ...),"
        " after a warm-up. Rates are units per second over all timed calls. The *latency* column"
        " says what p50/p95/p99 time: *per unit* (each unit stamped in and out, or one unit per"
        " call), *mean per unit* (a call of N units run one after another, over N), *per batch* or"
        " *per call* (a whole call of many units, never divided into a per-unit figure); p95 is"
        " quoted from 20 samples or more, p99 from 100. *calls* is the number of timed calls."
        " MB and CPU are each side's own: the memory its set-up left in the process, the most a"
        " call grew it, and the processes it started (sampled every 10 ms; short-lived children"
        " counted when reaped); CPU is that side's process, reaped children and live workers over"
        " wall time over all cores. The document's figures come from Rust on 8 cores and are shown"
        " for reference only; speedup is ours over the peer measured here, and only a"
        " like-for-like row's speedup reaches the Quick Reference. Each table is followed by what"
        " both sides did in each row and how their results were checked.",
        "",
        "## Quick Reference",
        "",
        _md_table(QUICK_HEADERS, quick_reference_rows(result["systems"])),
        "",
    ]
    from tenfold.core._scaling import scaling_markdown

    lines += [scaling_markdown(result), ""]
    # The document's systems in its order, then any other system (the platform) by name.
    extra = sorted(set(result["systems"]) - set(SYSTEM_ORDER))
    for key in [*SYSTEM_ORDER, *extra]:
        data = result["systems"].get(key)
        if not data:
            continue
        title = data.get("title", key)
        lines += [f"## {title}", ""]
        if data.get("error"):
            lines += [f"Benchmark run failed: {data['error']}", ""]
            continue
        if not data.get("scenarios"):
            lines += ["Not built yet.", ""]
            continue
        lines += [
            f"Peak RSS of the system's benchmark process: {data.get('peak_rss_mb', 0):.0f} MB.",
            "",
        ]
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for sc in data["scenarios"]:
            groups[sc.get("table") or "Scenarios"].append(sc)
        for table, scs in groups.items():
            lines += [
                f"### {table}",
                "",
                _md_table(SCENARIO_HEADERS, [scenario_row(s) for s in scs]),
                "",
            ]
            notes = [
                f"- **{s.get('row') or s['name']}**: {s['counts']}" for s in scs if s.get("counts")
            ]
            fair = [
                f"- **{s.get('row') or s['name']}** ({(s.get('ours') or {}).get('name', '?')}): "
                + fairness_note(s)
                for s in scs
                if fairness_note(s)
            ]
            extra = []
            for s in scs:
                metrics = {**(s.get("metrics") or {})}
                peer_metrics = (s.get("peer") or {}).get("metrics") or {}
                if metrics or peer_metrics:
                    text = ", ".join(f"{k}={v}" for k, v in metrics.items())
                    if peer_metrics:
                        text += "; peer: " + ", ".join(f"{k}={v}" for k, v in peer_metrics.items())
                    extra.append(f"- {s.get('row') or s['name']}: {text}")
            if notes:
                lines += ["What one unit counts:", "", *notes, ""]
            if fair:
                lines += ["What both sides did:", "", *fair, ""]
            if extra:
                lines += ["Measured alongside:", "", *extra, ""]
    if result.get("memory"):
        from tenfold.core._memory import MEMORY_HEADERS, memory_rows

        lines += [
            "## Memory Footprint",
            "",
            "Each figure is from its own fresh process (`python -m tenfold.core._memory SYSTEM"
            " SIZE`): *baseline* is the resident set once the system is imported and set up"
            " (median over the sizes); *per-operation* is the least-squares slope of the"
            " process's peak resident set over the sizes; *maximum* is that peak at the largest"
            " size. The document's figures (Rust) are shown beside ours.",
            "",
            _md_table(MEMORY_HEADERS, memory_rows(result["memory"])),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"
