"""Benchmark rows declared as data (``declared_rows``): families, defaults, phrases, sides, seeds."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.core.bench import Scenario, Seed, Subject
from tenfold.core.declare import declared_rows
from tenfold.core.errors import ConfigError

MODULE = """
def _ours(ctx):
    return lambda: 1

def _peer(ctx):
    return lambda: 1

def _sized(n):
    def prepare(ctx):
        return lambda: n
    return prepare
"""


@pytest.fixture
def rows_module(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    name = f"_rows_probe_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield name, tmp_path / f"{name}.toml"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_families_defaults_phrases_and_sides(rows_module: tuple[str, Path]) -> None:
    name, toml = rows_module
    toml.write_text(
        textwrap.dedent(
            """
            [phrases]
            same = "both sides read the same input"

            [family.first]
            table = "Throughput Benchmarks"
            rounds = 3

            [[family.first.row]]
            name = "a"
            unit = "ops"
            ours = { name = "tenfold", prepare = "_ours", sequential = true }
            peer = { name = "{who} 1.0", prepare = "_peer" }
            row = "Row A"
            fairness = "{same}; ours batches"
            modes = ["quick", "full"]

            [[family.first.row]]
            name = "b"
            unit = "ops"
            ours = { name = "tenfold", prepare = { factory = "_sized", args = [7] } }
            rounds = 2
            seed = "none"

            [family.second]

            [[family.second.row]]
            name = "c"
            unit = "ops"
            ours = { name = "tenfold", prepare = "tenfold.core.bench:scratch_cwd" }
            seed = { section = "no such section", row = "none" }
            """
        )
    )
    rows = declared_rows(name, who="peer")  # wording known only at run time
    assert list(rows) == ["first", "second"]
    a, b = rows["first"]
    module = sys.modules[name]
    assert a == Scenario(
        name="a",
        unit="ops",
        ours=Subject("tenfold", module._ours, sequential=True),
        peer=Subject("peer 1.0", module._peer),
        table="Throughput Benchmarks",
        row="Row A",
        rounds=3,
        fairness="both sides read the same input; ours batches",
        modes=("quick", "full"),
    )
    assert (b.rounds, b.table, b.seed, b.peer) == (2, "Throughput Benchmarks", None, None)
    assert b.ours.prepare(None)() == 7  # type: ignore[arg-type]
    (c,) = rows["second"]
    assert c.seed is None and c.table == "" and c.rounds == 5  # no such document row: no figure
    assert not isinstance(c.seed, Seed)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            'name = "x"\nunit = "u"\nours = { name = "t", prepare = "_ours" }\nrws = 3',
            "unknown keys",
        ),
        ('name = "x"\nunit = "u"\nours = { name = "t", prepare = "_nope" }', "has no '_nope'"),
        ('name = "x"\nunit = "u"\nours = { prepare = "_ours" }', "a side is"),
        ('name = "x"\nunit = "u"\nours = { name = "t", prepare = "_ours" }\nseed = 3', "seed is"),
    ],
)
def test_a_wrong_row_is_an_error_naming_it(
    rows_module: tuple[str, Path], row: str, message: str
) -> None:
    name, toml = rows_module
    toml.write_text(f"[family.f]\n\n[[family.f.row]]\n{row}\n")
    with pytest.raises(ConfigError, match=message) as info:
        declared_rows(name)
    assert "x" in str(info.value) or "_nope" in str(info.value)


def test_scaling_seed_reads_the_column_of_n_nodes_or_cores() -> None:
    from tenfold.core.declare import scaling_seed

    assert scaling_seed("Vertical Scaling", "Contract Compiler", 1) is None  # no 1-core column
    two_cores = scaling_seed("Vertical Scaling", "Contract Compiler", 2)
    assert two_cores is not None and "2 cores" in two_cores.extra
    four_nodes = scaling_seed("Horizontal Scaling", "Chaos Engine", 4)
    assert four_nodes is not None and "4 nodes" in four_nodes.extra
