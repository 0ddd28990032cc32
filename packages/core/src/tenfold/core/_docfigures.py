"""The performance document's figures, read once: every table, keyed by section, table and row.

The document (``spec/performance-benchmarks.md``) is the user's specification and
its figures are the seeds every benchmark row prints beside ours. They live in
one committed data file, ``doc_figures.json``, derived from the document by
:func:`parse_document` (run ``python -m tenfold.core._docfigures SPEC`` to write
it again); a core test checks that the file and the document agree, so a
figure is never copied by hand. Installed packages carry the data file, not the
document.

Layout: ``{section: {table: {row: {column: cell}}}}`` with cells as the document
writes them ("12,500/sec", "5.2ms"). ``section`` is a ``###`` heading without its
number ("Chaos Engine", "Resource Governor", "Quick Reference"), ``table`` the
``####`` heading above the table ("Throughput Benchmarks"), or ``""`` for a table
straight under its section. Plain key/value blocks under "Resource Usage" and
"Scalability" headings are kept as one-column tables (column ``"Value"``).
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tenfold.core.bench import Seed

__all__ = [
    "SYSTEM_SECTIONS",
    "doc_figures",
    "doc_row",
    "doc_seed",
    "parse_document",
    "seed_from_cells",
    "to_ms",
    "to_rate",
]

Figures = dict[str, dict[str, dict[str, dict[str, str]]]]

SYSTEM_SECTIONS: dict[str, str] = {
    "chaos_engine": "Chaos Engine",
    "contract_compiler": "Contract Executable Compiler",
    "auto_learner": "Cross-Domain Auto Learner",
    "semantic_lattice": "Dynamic Semantic Lattice Engine",
    "cloud_kernel": "Linux Scalable Cloud Kernel",
    "parallel_framework": "Parallel Architecture Framework",
    "symbolic_modeler": "Symbolic Reduction Modeler",
    "pipeline_engine": "Synthetic Pipeline Engine",
    "attestation_authority": "Universal Attestation Authority",
    "autoblocker_ledger": "Cross-Domain Autoblocker Ledger",
}
"""Each system's ``###`` section in the document. The core's tables are sections
of their own ("Resource Governor", "Plugin System", "Cryptography")."""

_KEY_VALUE_BLOCKS = {"Resource Usage", "Scalability"}
_HEADING = re.compile(r"^(#{2,4})\s+(.*?)\s*$")
_NUMBERED = re.compile(r"^\d+\.\s+")
_KEY_VALUE = re.compile(r"^([A-Za-z][^:]*?):\s+(.*)$")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_document(text: str) -> Figures:
    """Every table of the document (and its key/value blocks), keyed by section, table, row."""
    figures: Figures = {}
    section = table = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = _HEADING.match(line)
        if heading:
            level, title = len(heading.group(1)), _NUMBERED.sub("", heading.group(2))
            if level <= 3:
                section, table = title, ""
            else:
                table = title
            i += 1
            continue
        if line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: "):
            header = _cells(line)
            rows = figures.setdefault(section, {}).setdefault(table, {})
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = _cells(lines[i])
                rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=False))
                i += 1
            continue
        if line.strip() == "```" and table in _KEY_VALUE_BLOCKS:
            rows = figures.setdefault(section, {}).setdefault(table, {})
            key = ""
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body = lines[i]
                kv = _KEY_VALUE.match(body.strip())
                if kv and not body.startswith(" "):
                    key = kv.group(1).strip()
                    rows[key] = {"Value": kv.group(2).strip()}
                elif key and body.strip():
                    rows[key]["Value"] += "; " + body.strip()
                i += 1
        i += 1
    return figures


@cache
def doc_figures() -> Figures:
    """The committed figures (``doc_figures.json`` beside this module)."""
    text = resources.files("tenfold.core").joinpath("doc_figures.json").read_text()
    data: Figures = json.loads(text)
    return data


def doc_row(section: str, table: str, row: str) -> dict[str, str] | None:
    """One row of one of the document's tables as written, or ``None``."""
    return doc_figures().get(section, {}).get(table, {}).get(row)


_RATE = re.compile(r"^([\d.,]+)\s*([KM]?)")
_TIME = re.compile(r"^([\d.,]+)\s*(μs|us|ms|sec|s)\b")
_SCALE = {"": 1, "K": 1e3, "M": 1e6}
_TO_MS = {"μs": 1e-3, "us": 1e-3, "ms": 1.0, "sec": 1e3, "s": 1e3}


def to_rate(cell: str) -> float | None:
    """``"12,500/sec"``, ``"2.5M/sec"``, ``"10M pps"``, ``"10K faults/sec"`` as units per second."""
    match = _RATE.match(cell.strip())
    if not match or not match.group(1).strip(".,"):
        return None
    return float(match.group(1).replace(",", "")) * _SCALE[match.group(2)]


def to_ms(cell: str) -> float | None:
    """``"5.2ms"``, ``"0.4μs"``, ``"2.5 sec"`` in milliseconds."""
    match = _TIME.match(cell.strip())
    if not match:
        return None
    return round(float(match.group(1).replace(",", "")) * _TO_MS[match.group(2)], 9)


_PCT = re.compile(r"\((p50|p95|p99)\)")
_RATE_COLUMNS = {"Throughput", "Tasks/sec"}
_P50_COLUMNS = {"Latency", "Match Time", "Inference Time"}


def seed_from_cells(cells: dict[str, str]) -> Seed:
    """A document row's cells as a :class:`Seed` (see :func:`doc_seed` for the column rules)."""
    values: dict[str, float] = {}
    extra: dict[str, str] = {}
    for column, cell in cells.items():
        pct = _PCT.search(column)
        number: float | None = None
        if column in _RATE_COLUMNS:
            number = to_rate(cell)
            key = "ops_per_s"
        elif pct is not None or column in _P50_COLUMNS:
            number = to_ms(cell)
            key = f"{pct.group(1) if pct else 'p50'}_ms"
        if number is not None:
            values[key] = number
        else:
            extra[column.lower()] = cell
    return Seed(
        ops_per_s=values.get("ops_per_s"),
        p50_ms=values.get("p50_ms"),
        p95_ms=values.get("p95_ms"),
        p99_ms=values.get("p99_ms"),
        extra=extra,
    )


def doc_seed(system: str, table: str, row: str) -> Seed | None:
    """The document's figure for a benchmark row, or ``None`` where it has none.

    ``system`` is the package key (``"chaos_engine"``, or ``"core"``, whose
    ``table`` is itself a section); ``table`` and ``row`` are named as in the
    document. A rate column becomes ``ops_per_s``; latency columns become
    ``p50_ms``/``p95_ms``/``p99_ms`` (a plain "Latency" is read as the median);
    every other column is kept as written, by its lower-cased name.
    """
    if not row:
        return None
    if system == "core" or system not in SYSTEM_SECTIONS:
        cells = doc_row(table, "", row)
    else:
        cells = doc_row(SYSTEM_SECTIONS[system], table, row)
    return None if cells is None else seed_from_cells(cells)


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(
            "usage: python -m tenfold.core._docfigures SPEC.md > doc_figures.json", file=sys.stderr
        )
        return 2
    figures: Any = parse_document(Path(argv[0]).read_text(encoding="utf-8"))
    sys.stdout.write(json.dumps(figures, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
