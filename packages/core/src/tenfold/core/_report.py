"""Turning harness results into the document's tables: terminal (Rich) and Markdown."""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from typing import Any

__all__ = ["DOC_QUICK_REFERENCE", "SYSTEM_ORDER", "markdown_report", "quick_reference_rows"]

# The Quick Reference table of the performance document (Rust, 8 cores).
DOC_QUICK_REFERENCE: dict[str, tuple[str, str, str, str, str]] = {
    "chaos_engine": ("Chaos Engine", "10K faults/sec", "8.5ms", "450MB", "65%"),
    "contract_compiler": ("Contract Compiler", "1K contracts/sec", "95ms", "980MB", "80%"),
    "auto_learner": ("Auto Learner", "100K samples/sec", "45ms", "1.8GB", "90%"),
    "semantic_lattice": ("Semantic Lattice", "50K queries/sec", "18ms", "950MB", "70%"),
    "cloud_kernel": ("Cloud Kernel", "1M syscalls/sec", "0.8μs", "95MB", "40%"),
    "parallel_framework": ("Parallel Framework", "100K tasks/sec", "4.2ms", "1.9GB", "95%"),
    "symbolic_modeler": ("Symbolic Modeler", "10K reductions/sec", "48ms", "480MB", "75%"),
    "pipeline_engine": ("Pipeline Engine", "1M events/sec", "9.5ms", "1.1GB", "85%"),
    "attestation_authority": (
        "Attestation Authority",
        "10K attestations/sec",
        "98ms",
        "520MB",
        "60%",
    ),
    "autoblocker_ledger": ("Autoblocker Ledger", "50K writes/sec", "19ms", "1.05GB", "72%"),
}

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


def scenario_row(sc: dict[str, Any]) -> list[str]:
    """One scenario as table cells: row, ours (rate, p50, p95, p99, RSS, CPU), peer, speedup, doc."""
    label = sc.get("row") or sc["name"]
    if sc.get("mode") == "full":
        label += " [--full]"
    if "skipped" in sc:
        return [label, f"skipped: {sc['skipped']}", *[""] * 9, _seed_text(sc.get("seed"))]
    if "error" in sc:
        return [label, f"error: {sc['error'][:80]}", *[""] * 9, _seed_text(sc.get("seed"))]
    peer = sc.get("peer") or {}
    if peer.get("error"):
        peer_name, peer_rate, peer_p95 = peer.get("name", ""), f"n/a ({peer['error'][:60]})", "-"
    elif peer:
        peer_name, peer_rate, peer_p95 = (
            peer.get("name", ""),
            fmt_rate(peer.get("ops_per_s")),
            fmt_ms(peer.get("p95_ms")),
        )
    else:
        peer_name, peer_rate, peer_p95 = "-", "-", "-"
    speed = sc.get("speedup_vs_peer")
    return [
        label,
        f"{fmt_rate(sc.get('ops_per_s'))} {sc.get('unit', '')}/s",
        fmt_ms(sc.get("p50_ms")),
        fmt_ms(sc.get("p95_ms")),
        fmt_ms(sc.get("p99_ms")),
        f"{sc.get('rss_mb', 0):.0f}",
        f"{sc.get('cpu_pct', 0):.0f}%",
        peer_name,
        peer_rate,
        peer_p95,
        f"{speed:.2f}x" if isinstance(speed, int | float) else "-",
        _seed_text(sc.get("seed")),
    ]


SCENARIO_HEADERS = [
    "Operation",
    "ours",
    "p50",
    "p95",
    "p99",
    "RSS MB",
    "CPU",
    "peer",
    "peer rate",
    "peer p95",
    "speedup",
    "document (Rust, 8 cores)",
]


def quick_reference_rows(systems: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, (title, d_tp, d_p95, d_mem, d_cpu) in DOC_QUICK_REFERENCE.items():
        data = systems.get(key)
        head = None
        if data and data.get("scenarios"):
            ran = [s for s in data["scenarios"] if "ops_per_s" in s]
            head = next((s for s in ran if s.get("headline")), ran[0] if ran else None)
        if head is None or data is None:
            status = "not built yet" if data and not data.get("built") else "not run"
            if data and data.get("error"):
                status = f"error: {data['error'][:60]}"
            rows.append(
                [title, status, "-", "-", "-", "-", "-", f"{d_tp} / {d_p95} / {d_mem} / {d_cpu}"]
            )
            continue
        peer = head.get("peer") or {}
        speed = head.get("speedup_vs_peer")
        rows.append(
            [
                title,
                f"{fmt_rate(head['ops_per_s'])} {head['unit']}/s ({head.get('row') or head['name']})",
                fmt_ms(head.get("p95_ms")),
                f"{data.get('peak_rss_mb', head.get('rss_mb', 0)):.0f} MB",
                f"{head.get('cpu_pct', 0):.0f}%",
                peer.get("name", "-")
                + (f" {fmt_rate(peer['ops_per_s'])}/s" if peer.get("ops_per_s") else ""),
                f"{speed:.2f}x" if isinstance(speed, int | float) else "-",
                f"{d_tp} / {d_p95} / {d_mem} / {d_cpu}",
            ]
        )
    return rows


QUICK_HEADERS = [
    "System",
    "Throughput (ours)",
    "p95",
    "Memory",
    "CPU",
    "peer",
    "speedup",
    "document: throughput / p95 / memory / CPU",
]


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def markdown_report(result: dict[str, Any]) -> str:
    m = result["machine"]
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# tenfold benchmarks",
        "",
        "Written by `tenfold bench --report`; do not edit by hand.",
        "",
        f"**Machine:** {m['cores']} cores ({m['cpu']}), {m.get('memory_gib', '?')} GiB, "
        f"Python {m['python']}, Linux {m.get('kernel', '?')}. **Mode:** {result.get('mode', '?')}. "
        f"**Run:** {when}.",
        "",
        "Ours and the peer run on the same input in the same process, interleaved (A B, B A, ...),"
        " after a warm-up. Rates are units per second over all timed calls; p50/p95/p99 are per"
        " unit (HDR histogram); RSS is the peak while that subject ran, its child processes included; CPU is process CPU time"
        " over wall time over all cores. The document's figures come from Rust on 8 cores and are"
        " shown for reference only; speedup is ours over the peer measured here.",
        "",
        "## Quick Reference",
        "",
        _md_table(QUICK_HEADERS, quick_reference_rows(result["systems"])),
        "",
    ]
    for key in SYSTEM_ORDER:
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
            if extra:
                lines += ["Measured alongside:", "", *extra, ""]
    return "\n".join(lines).rstrip() + "\n"
