"""Crash consistency of a file store: SIGKILL during loads and reasoning, then reopen.

A writer process loads file after file into one store (each load followed by a
materialisation) and acknowledges each on stdout once it returned; it is
killed at a random moment. The reopened store must hold, for every file, all of
its triples or none (every acknowledged file all), no triple of a file twice, a
catalog entry per file present, and must reason and answer queries as a store
that loaded the same files without a crash.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenfold.semantic_lattice import LatticeStore

EX = "http://e.org/"
FILES = 12
PER_FILE = 400

_WRITER = """
import sys
from tenfold.semantic_lattice import LatticeStore
store = LatticeStore(sys.argv[1])
store.add_rules(sys.argv[2])
for path in sys.argv[3:]:
    store.load(path)
    store.reason()
    print("acked", path, flush=True)
"""

RULES = (
    f".decl r(a, b)\nr(X, Y) :- triple(X, <{EX}p>, Y).\n"
    f"triple(X, <{EX}seen>, <{EX}yes>) :- r(X, _)."
)


def _write_files(tmp: Path) -> list[Path]:
    paths = []
    for k in range(FILES):
        path = tmp / f"part{k}.nt"
        lines = [f"<{EX}f{k}s{i}> <{EX}p> <{EX}o{i % 7}> ." for i in range(PER_FILE)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def _subjects_per_file(store: LatticeStore) -> dict[int, int]:
    counts: dict[int, int] = {}
    for s, p, _ in store.triples(base_only=True):
        if p == f"<{EX}p>":
            k = int(s.removeprefix(f"<{EX}f").split("s")[0])
            counts[k] = counts.get(k, 0) + 1
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_a_store_killed_while_loading_reopens_with_whole_files(tmp_path: Path, seed: int) -> None:
    paths = _write_files(tmp_path)
    store_path = tmp_path / "crash.duckdb"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(store_path), RULES, *map(str, paths)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        # Wait for a first acknowledgement, then kill at a random moment after it.
        first = proc.stdout.readline()
        assert first.startswith("acked"), proc.stderr.read() if proc.stderr else first
        acked.append(first.split()[1])
        time.sleep(random.Random(seed).uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        acked += [line.split()[1] for line in out.splitlines() if line.startswith("acked")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acked_files = {int(Path(p).stem.removeprefix("part")) for p in acked}

    with LatticeStore(store_path) as store:
        per_file = _subjects_per_file(store)
        # All of a file or none of it; every acknowledged file whole.
        assert all(n == PER_FILE for n in per_file.values()), per_file
        assert acked_files <= set(per_file)
        present = sorted(per_file)
        loads = store.engine.con.execute(
            "SELECT count(*) FROM catalog WHERE kind = 'load'"
        ).fetchone()
        assert loads is not None and loads[0] == len(present)
        store.reason()
        got = (store.count(), store.count("r"))
        seen = store.sparql(f"SELECT (COUNT(*) AS ?n) WHERE {{ ?s <{EX}seen> <{EX}yes> }}").rows

    with LatticeStore(tmp_path / "clean.duckdb") as clean:
        clean.add_rules(RULES)
        for k in present:
            clean.load(paths[k])
        clean.reason()
        assert got == (clean.count(), clean.count("r"))
        assert (
            seen
            == clean.sparql(f"SELECT (COUNT(*) AS ?n) WHERE {{ ?s <{EX}seen> <{EX}yes> }}").rows
        )
