"""``tenfold bench --sweep KEY=V1,V2,...``: the same scenarios once per value of a setting.

``KEY`` is a dotted configuration path, ``SECTION.KEY[.SUBKEY...]``
(``chaos_engine.performance.max_concurrent_faults``). Each value is applied as
the environment override ``TENFOLD_<SECTION>__<KEY>...`` (see
:mod:`tenfold.core.config`) while the chosen systems' benchmark processes run,
so every process a scenario starts sees it too; nothing is written to any
configuration file. The systems default to the one owning the section. For
each value the sweep prints throughput, latency and memory of each scenario
(and, with ``--memory``, the Memory Footprint rows), so a setting's effect is
read across the values of one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from tenfold.core.bench import Mode
from tenfold.core.errors import BenchError

__all__ = ["Sweep", "parse_sweep", "run_sweeps", "sweep_rows"]

_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_SECTION_SYSTEM = {"compiler": "contract_compiler"}
"""Sections whose name is not their system's."""


@dataclass(frozen=True)
class Sweep:
    key: str
    values: tuple[str, ...]

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def variable(self) -> str:
        return "TENFOLD_" + "__".join(part.upper() for part in self.key.split("."))


def parse_sweep(text: str) -> Sweep:
    """``KEY=V1,V2,...`` -> :class:`Sweep`; a malformed one is a one-line :class:`BenchError`."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise BenchError(
            f"--sweep {text!r}: expected SECTION.KEY=V1,V2,... "
            "(e.g. chaos_engine.performance.max_concurrent_faults=10,100,1000)"
        )
    vals = tuple(v.strip() for v in values.split(","))
    if not vals or any(not v for v in vals):
        raise BenchError(f"--sweep {text!r}: give one or more values separated by commas")
    if len(set(vals)) != len(vals):
        raise BenchError(f"--sweep {text!r}: a value is repeated")
    return Sweep(key, vals)


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _systems_for(sweep: Sweep, chosen: Sequence[str] | None, known: Sequence[str]) -> list[str]:
    if chosen:
        return list(chosen)
    system = _SECTION_SYSTEM.get(sweep.section, sweep.section)
    if system not in known:
        raise BenchError(
            f"--sweep {sweep.key}: no system owns [{sweep.section}]; name one with -p SYSTEM"
        )
    return [system]


SWEEP_HEADERS = ["Value", "Row", "Ours /s", "p50 ms", "p95 ms", "Latency", "MB", "CPU %", "Note"]
MEMORY_SWEEP_HEADERS = [
    "Value",
    "Component",
    "Baseline MB",
    "Per-op KB",
    "Maximum MB",
    "Largest size: s",
    "units/s",
]


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, int | float) else "-"


def sweep_rows(record: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    for point in record["points"]:
        for system, data in point.get("systems", {}).items():
            if data.get("error"):
                rows.append([point["value"], system, "", "", "", "", "", "", data["error"]])
            for sc in data.get("scenarios", []):
                note = sc.get("error") or sc.get("skipped") or ""
                rows.append(
                    [
                        point["value"],
                        f"{system}/{sc['name']}",
                        _num(sc.get("ops_per_s"), ",.0f"),
                        _num(sc.get("p50_ms"), ",.3f"),
                        _num(sc.get("p95_ms"), ",.3f"),
                        str(sc.get("latency_kind") or ""),
                        _num((sc.get("ours") or {}).get("rss_mb"), ",.1f"),
                        _num((sc.get("ours") or {}).get("cpu_pct"), ".0f"),
                        note.splitlines()[0][:100] if note else "",
                    ]
                )
    return rows


def memory_sweep_rows(record: dict[str, Any]) -> list[list[str]]:
    rows = []
    for point in record["points"]:
        for m in point.get("memory", []):
            if m.get("error"):
                rows.append([point["value"], m["row"], "error", m["error"][:100], "", "", ""])
                continue
            secs = (m.get("seconds") or [None])[-1]
            rows.append(
                [
                    point["value"],
                    m["row"],
                    _num(m.get("baseline_mb"), ",.1f"),
                    _num(m.get("per_op_kb"), "+,.2f"),
                    _num(m.get("max_mb"), ",.1f"),
                    _num(secs, ",.2f"),
                    _num(m["max_size"] / secs if secs else None, ",.0f"),
                ]
            )
    return rows


def _markdown(records: Sequence[dict[str, Any]], machine: dict[str, Any], mode: str) -> str:
    from tenfold.core._report import _md_table

    lines = [
        "# tenfold bench --sweep",
        "",
        f"**Machine:** {machine['cores']} cores ({machine['cpu']}), Python {machine['python']}."
        f" **Mode:** {mode}.",
        "",
    ]
    for rec in records:
        lines += [f"## {rec['key']} (`{rec['variable']}`)", ""]
        rows = sweep_rows(rec)
        if rows:
            lines += [_md_table(SWEEP_HEADERS, rows), ""]
        mem = memory_sweep_rows(rec)
        if mem:
            lines += [_md_table(MEMORY_SWEEP_HEADERS, mem), ""]
    return "\n".join(lines).rstrip() + "\n"


def run_sweeps(
    texts: Sequence[str],
    systems: Sequence[str] | None,
    known: Sequence[str],
    mode: Mode,
    only: Sequence[str],
    *,
    memory: bool,
    scenarios: bool,
    as_json: bool,
    report: Path | None,
) -> list[dict[str, Any]]:
    """Run every sweep; print (or emit as JSON) one table per sweep."""
    from tenfold.core import _runner
    from tenfold.core._harness import machine_info
    from tenfold.core._memory import measure

    sweeps = [parse_sweep(t) for t in texts]
    unknown = [s for s in systems or () if s not in known]
    if unknown:
        raise BenchError(f"unknown system(s): {', '.join(unknown)} (known: {', '.join(known)})")
    explicit = list(systems) if systems else None
    records: list[dict[str, Any]] = []
    for sweep in sweeps:
        targets = _systems_for(sweep, explicit, known)
        record: dict[str, Any] = {
            "key": sweep.key,
            "variable": sweep.variable,
            "systems": targets,
            "points": [],
        }
        for value in sweep.values:
            click.echo(f"[sweep] {sweep.variable}={value} ...", err=True)
            point: dict[str, Any] = {"value": value, "systems": {}}
            with _env(sweep.variable, value):
                if scenarios:
                    point["systems"] = _runner.run_systems(targets, mode, only)["systems"]
                if memory:
                    point["memory"] = measure(targets, mode)
            record["points"].append(point)
        records.append(record)
    machine = machine_info()
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(_markdown(records, machine, mode))
    if as_json:
        click.echo(json.dumps({"machine": machine, "mode": mode, "sweeps": records}, default=str))
        return records
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    for rec in records:
        rows = sweep_rows(rec)
        if rows:
            table = Table(title=f"--sweep {rec['key']} ({rec['variable']})")
            for h in SWEEP_HEADERS:
                table.add_column(h, overflow="fold")
            for row in rows:
                table.add_row(*row)
            console.print(table)
        mem = memory_sweep_rows(rec)
        if mem:
            table = Table(title=f"--sweep {rec['key']}: Memory Footprint")
            for h in MEMORY_SWEEP_HEADERS:
                table.add_column(h, overflow="fold")
            for row in mem:
                table.add_row(*row)
            console.print(table)
    if report is not None:
        click.echo(f"wrote {report}")
    return records
