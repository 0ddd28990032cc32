"""``chaos run`` without the CLI framework: load, run (under a governor when it injects faults), report.

``tenfold chaos run`` and ``python -m tenfold.chaos_engine run`` are the same click
command, run through the core's runner; both end in :func:`run_file`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any


def experiment_name(path: Path) -> str:
    """The journal and kernel-object name of the experiment in ``path`` (its file stem)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", path.stem)[:24] or "experiment"


def run_file(
    experiment: Path,
    journal_dir: Path,
    seed: int | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> tuple[str, dict[str, object]]:
    """Run the experiment in ``experiment``; return its title and the report as a dict."""
    from tenfold.chaos_engine._engine import ChaosEngine
    from tenfold.chaos_engine._experiment import load_experiment, run_experiment

    exp = load_experiment(experiment)

    async def main() -> dict[str, object]:
        # The governor (and the core configuration it reads) only where a fault can use it:
        # an experiment of actions and probes alone injects nothing for it to budget.
        governor: Any = None
        if exp.fault_steps:
            from tenfold.core.governor import Governor

            governor = Governor.from_config()
        try:
            engine = await ChaosEngine.create(
                None, governor, experiment=experiment_name(experiment), journal_dir=journal_dir
            )
            if on_event is not None:
                engine.monitor.listener = on_event
            async with engine:
                report = await run_experiment(exp, engine, seed=seed)
        finally:
            if governor is not None:
                governor.close()
        return report.as_dict()

    return exp.title, asyncio.run(main())
