"""The document's Scalability Analysis tables, filled from rows named ``<op>_<N>_nodes`` /
``<op>_<N>_workers``.

A system's row for one operation gathers its rows at every count N; each cell
holds ours, the peer on the same nodes, the document's figure for that column,
and the scaling factor: actual speedup over ideal speedup, ``(rate_N / rate_1)
/ N``, relative to the same operation's 1-node (1-worker) row, for ours and the
peer alike. A column with no row says why: "needs more cores" when the count
exceeds the machine's cores (vertical scaling: a core per worker), else "not
run" (quick mode runs the 1 and 2 columns; ``--full`` the rest). Nothing in a
cell is ever estimated: every number is a measured rate or the document's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["SCALING_TABLES", "ScalingTable", "scaling_factor", "scaling_markdown", "scaling_rows"]

_NAME = re.compile(r"^(?P<op>.+)_(?P<n>\d+)_(?P<kind>nodes|workers)$")


@dataclass(frozen=True)
class ScalingTable:
    """One of the document's two scaling tables: its systems and its columns."""

    title: str
    kind: str  # the row-name suffix that feeds it: "nodes" or "workers"
    systems: tuple[tuple[str, str], ...]  # (system key, the document's row name)
    columns: tuple[tuple[int, str], ...]  # (count N, the document's column header)
    per_core: bool  # a column needs N cores to be measured (vertical scaling)
    # The vertical table's first column is ours alone: the document starts at 2 cores,
    # and the scaling factor needs the 1-worker rate as its base.


SCALING_TABLES = (
    ScalingTable(
        "Horizontal Scaling",
        "nodes",
        (
            ("chaos_engine", "Chaos Engine"),
            ("parallel_framework", "Parallel Framework"),
            ("pipeline_engine", "Pipeline Engine"),
            ("autoblocker_ledger", "Autoblocker Ledger"),
        ),
        ((1, "1 Node"), (2, "2 Nodes"), (4, "4 Nodes"), (8, "8 Nodes")),
        per_core=False,
    ),
    ScalingTable(
        "Vertical Scaling",
        "workers",
        (
            ("auto_learner", "Auto Learner"),
            ("contract_compiler", "Contract Compiler"),
            ("symbolic_modeler", "Symbolic Modeler"),
        ),
        ((1, "1 Worker"), (2, "2 Cores"), (4, "4 Cores"), (8, "8 Cores"), (16, "16 Cores")),
        per_core=True,
    ),
)


def scaling_factor(rate_n: float, rate_1: float, n: int) -> float | None:
    """Actual speedup over ideal speedup: ``(rate_n / rate_1) / n`` (None without a base)."""
    if rate_1 <= 0 or n <= 0:
        return None
    return rate_n / rate_1 / n


def _rate(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _ops(
    scenarios: list[dict[str, Any]], table: ScalingTable
) -> dict[str, dict[int, dict[str, Any]]]:
    """Rows of the table's kind grouped by operation, then by count, in first-seen order.

    Only counts that are columns of the table count: ``write_3_nodes`` (a cluster of
    three members, not a scale-out size) stays out.
    """
    counts = {n for n, _label in table.columns}
    ops: dict[str, dict[int, dict[str, Any]]] = {}
    for sc in scenarios:
        m = _NAME.match(str(sc.get("name", "")))
        if m and m.group("kind") == table.kind and int(m.group("n")) in counts:
            ops.setdefault(m.group("op"), {})[int(m.group("n"))] = sc
    return ops


def _missing(table: ScalingTable, n: int, cores: int) -> str:
    if table.per_core and n > cores:
        return f"needs more cores (this machine has {cores})"
    return "not run (--full runs it)" if n > 2 else "not run"


def _cell(
    table: ScalingTable,
    n: int,
    rows: dict[int, dict[str, Any]],
    doc: str | None,
    cores: int,
) -> tuple[str, float | None, float | None]:
    """One column's text, with our and the peer's scaling factor at N."""
    doc_text = f"doc {doc}" if doc and doc != "-" else "doc -"
    sc = rows.get(n)
    if sc is None:
        return f"{_missing(table, n, cores)}; {doc_text}", None, None
    if "skipped" in sc or "error" in sc:
        why = sc.get("skipped") or f"error: {str(sc.get('error'))[:60]}"
        return f"{why}; {doc_text}", None, None
    from tenfold.core._report import fmt_rate

    ours = _rate(sc.get("ops_per_s"))
    peer = _rate((sc.get("peer") or {}).get("ops_per_s"))
    base = rows.get(1) or {}
    ours_1 = _rate(base.get("ops_per_s"))
    peer_1 = _rate((base.get("peer") or {}).get("ops_per_s"))
    f_ours = scaling_factor(ours, ours_1, n) if ours and ours_1 else None
    f_peer = scaling_factor(peer, peer_1, n) if peer and peer_1 else None
    parts = [f"ours {fmt_rate(ours)}/s" if ours else "ours -"]
    if sc.get("mode") == "full":  # sizes differ from a quick base row: say so
        parts[0] += " [--full]"
    parts.append(f"peer {fmt_rate(peer)}/s" if peer else "peer -")
    parts.append(doc_text)
    if f_ours is not None and n > 1:  # at N = 1 the factor is 1 by definition
        text = f"scaling {f_ours:.2f}"
        if f_peer is not None:
            text += f" (peer {f_peer:.2f})"
        parts.append(text)
    return "; ".join(parts), f_ours, f_peer


def _what_ran(
    title: str, op: str, by_n: dict[int, dict[str, Any]], table: ScalingTable
) -> str | None:
    """The note under a table for one operation: the sizes that ran, and what a node
    (or worker) was in the largest of them that says so, in its row's own words.

    Only rows that were measured count: a row skipped in this mode (quick mode
    declares the 4- and 8-node rows too) never describes what ran.
    """
    ran = sorted(n for n, sc in by_n.items() if "skipped" not in sc and "error" not in sc)
    if not ran:
        return None
    described = [n for n in ran if by_n[n].get("counts")]
    unit = table.kind if len(ran) > 1 or ran[0] != 1 else table.kind[:-1]
    sizes = ", ".join(str(n) for n in ran[:-1])
    sizes = f"{sizes} and {ran[-1]}" if sizes else str(ran[-1])
    not_run = [n for n, _label in table.columns if n not in ran]
    head = f"- **{title} ({op})**, measured at {sizes} {unit}"
    if not_run:
        head += f" (not at {', '.join(str(n) for n in not_run)})"
    if not described:
        return head
    largest = by_n[described[-1]]
    peer_name = (largest.get("peer") or {}).get("name", "-")
    return (
        f"{head}; at {described[-1]}: {largest['counts']} (ours: "
        f"{(largest.get('ours') or {}).get('name', '?')}; peer: {peer_name})"
    )


def scaling_rows(
    table: ScalingTable, systems: dict[str, Any], cores: int
) -> tuple[list[str], list[list[str]], list[str]]:
    """Headers, rows and notes (what a node or worker is, per row) of one scaling table."""
    from tenfold.core._docfigures import doc_row

    headers = ["System", "operation", *(label for _n, label in table.columns), "Scaling Factor"]
    rows: list[list[str]] = []
    notes: list[str] = []
    for key, title in table.systems:
        doc = doc_row(table.title, "", title) or {}
        doc_factor = doc.get("Scaling Factor", "-")
        data = systems.get(key) or {}
        ops = _ops(data.get("scenarios") or [], table)
        if not ops:
            status = "not run" if not data else f"no rows named ..._<N>_{table.kind}"
            empty = [
                f"{_missing(table, n, cores) if table.per_core and n > cores else status}; "
                f"doc {doc.get(label, '-')}"
                for n, label in table.columns
            ]
            rows.append([title, "-", *empty, f"doc {doc_factor}"])
            continue
        for op, by_n in ops.items():
            cells: list[str] = []
            last: tuple[int, float | None, float | None] | None = None
            for n, label in table.columns:
                text, f_ours, f_peer = _cell(table, n, by_n, doc.get(label), cores)
                cells.append(text)
                if f_ours is not None and n > 1:
                    last = (n, f_ours, f_peer)
            if last is None:
                factor = f"ours - (needs the 1- and an N-{table.kind[:-1]} row); doc {doc_factor}"
            else:
                n, f_ours, f_peer = last
                factor = f"ours {f_ours:.2f} at {n}"
                if f_peer is not None:
                    factor += f"; peer {f_peer:.2f}"
                factor += f"; doc {doc_factor}"
            rows.append([title, op, *cells, factor])
            note = _what_ran(title, op, by_n, table)
            if note:
                notes.append(note)
    return headers, rows, notes


def scaling_markdown(result: dict[str, Any]) -> str:
    """The Scalability Analysis section of the report: both tables, always."""
    from tenfold.core._report import _md_table

    cores = int(result.get("machine", {}).get("cores") or 1)
    lines = [
        "## Scalability Analysis",
        "",
        "The document's two scaling tables, from rows named `<op>_<N>_nodes` (horizontal) and"
        " `<op>_<N>_workers` (vertical). Each cell: ours, the peer on the same nodes, the"
        " document's figure (Rust, 8 cores) and the scaling factor = actual speedup / ideal"
        " speedup = (rate at N / rate at 1) / N, relative to the same operation's 1-node or"
        f" 1-worker row. Everything here ran on this one {cores}-core machine: what a node or"
        " worker is, is said under each table. Columns not measured say why; nothing is"
        " extrapolated.",
        "",
    ]
    for table in SCALING_TABLES:
        headers, rows, notes = scaling_rows(table, result.get("systems", {}), cores)
        lines += [f"### {table.title}", "", _md_table(headers, rows), ""]
        if notes:
            lines += ["What a node or worker is in each row:", "", *notes, ""]
    return "\n".join(lines)
