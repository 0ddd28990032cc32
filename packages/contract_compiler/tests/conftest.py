"""Every counterexample the suite produces replays on the reference interpreter.

The compiler reports a counterexample (a "failed" verdict) only when it names a
real run: the arguments, caller and state it gives make the call revert on that
very guard. This hook sees every verdict any in-process compile of any test
produces (it wraps the driver's judging step, which every fresh compile goes
through) and, when the test ends, replays each counterexample on the
interpreter. A counterexample that does not replay fails the test that produced
it, whatever the test itself asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tenfold.contract_compiler import _compiler
from tenfold.contract_compiler._ast import Contract
from tenfold.contract_compiler._interp import replay
from tenfold.contract_compiler._solver import Verdict

COUNTEREXAMPLES: list[tuple[Contract, Verdict]] = []
"""Every failed verdict seen this session (kept for the session-level count test)."""


@pytest.fixture(autouse=True)
def _replay_every_counterexample(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    seen: list[tuple[Contract, Verdict]] = []
    judge = _compiler._judge

    def recording_judge(contract: Contract, smap: Any, verdicts: list[Verdict], opts: Any) -> Any:
        seen.extend((contract, v) for v in verdicts if v.status == "failed")
        return judge(contract, smap, verdicts, opts)

    monkeypatch.setattr(_compiler, "_judge", recording_judge)
    yield
    COUNTEREXAMPLES.extend(seen)
    for contract, v in seen:
        got = replay(contract, v.fn, v.counterexample)
        assert got == v.gid, (
            f"counterexample for guard #{v.gid} ({v.kind}: {v.message}) in '{v.fn}' of "
            f"{contract.name} does not replay: {v.counterexample} -> "
            f"{'completed' if got == 0 else 'not a call' if got is None else f'guard #{got}'}"
        )
