"""``chaos run`` without the CLI framework: load, run (under a governor when it injects faults), report.

``tenfold chaos run`` and ``python -m tenfold.chaos_engine run`` are the same click
command, run through the core's runner; both end in :func:`run_file`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tenfold.chaos_engine._record import Frozen


def experiment_name(path: Path) -> str:
    """The journal and kernel-object name of the experiment in ``path`` (its file stem)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", path.stem)[:24] or "experiment"


class Cluster(Frozen):
    """What the command line says about agents: URL overrides and the controller's TLS files."""

    _fields = ("agents", "tls")
    agents: dict[str, str]
    tls: Any

    def __init__(self, agents: dict[str, str] | None = None, tls: Any = None) -> None:
        fields = self.__dict__
        fields["agents"] = {} if agents is None else agents
        fields["tls"] = tls

    @classmethod
    def from_cli(
        cls,
        agents: Sequence[str],
        cert: Path | None,
        key: Path | None,
        ca: Path | None,
    ) -> Cluster:
        if not agents and not (cert or key or ca):
            return cls()  # a plain local run: the controller's modules (TLS, HTTP) stay unloaded
        from tenfold.chaos_engine._controller import parse_agent
        from tenfold.chaos_engine.errors import AgentError

        refs = [parse_agent(text) for text in agents]
        tls = None
        if cert or key or ca:
            if not (cert and key and ca):
                raise AgentError("the controller needs all of --tls-cert, --tls-key and --tls-ca")
            from tenfold.core.tls import TlsFiles

            tls = TlsFiles(cert, key, ca)
        return cls({r.name: r.url for r in refs}, tls)

    def controller(self, declared: dict[str, str]) -> Any:
        """A controller over the experiment's agents (URLs overridden from the command line)."""
        from tenfold.chaos_engine._controller import AgentRef, Controller
        from tenfold.chaos_engine.errors import AgentError

        unknown = sorted(set(self.agents) - set(declared))
        if unknown:
            raise AgentError(f"--agent {unknown[0]}: the experiment declares no such agent")
        if self.tls is None:
            raise AgentError(
                "the experiment runs faults on agents: pass the controller's --tls-cert, "
                "--tls-key and --tls-ca"
            )
        urls = declared | self.agents
        return Controller([AgentRef(n, u) for n, u in urls.items()], self.tls)


def run_file(
    experiment: Path,
    journal_dir: Path,
    seed: int | None = None,
    on_event: Callable[[Any], None] | None = None,
    *,
    cluster: Cluster | None = None,
    loaded: Callable[[], None] | None = None,
) -> tuple[str, dict[str, object]]:
    """Run the experiment in ``experiment``; return its title and the report as a dict.

    An experiment that declares agents runs their steps through a controller
    (``cluster`` gives its TLS files and URL overrides). ``loaded`` is called once
    the experiment is read and valid, before the run.
    """
    from tenfold.chaos_engine._engine import ChaosEngine
    from tenfold.chaos_engine._experiment import load_experiment, run_experiment

    exp = load_experiment(experiment)
    if loaded is not None:
        loaded()
    controller = None
    if exp.agents:
        controller = (cluster or Cluster()).controller(exp.agents)
    elif cluster is not None and cluster.agents:
        from tenfold.chaos_engine.errors import AgentError

        raise AgentError(f"--agent given, but {experiment} declares no [agents]")

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
                if controller is None:
                    report = await run_experiment(exp, engine, seed=seed)
                else:
                    from tenfold.chaos_engine._controller import ClusterEngine

                    try:
                        await asyncio.to_thread(controller.connect)
                        cluster_engine = ClusterEngine(engine, controller)
                        report = await run_experiment(exp, cluster_engine, seed=seed)
                    finally:
                        await asyncio.to_thread(controller.close)
        finally:
            if governor is not None:
                governor.close()
        out = report.as_dict()
        if controller is not None:
            out["agents"] = controller.agents
            out["agents_lost"] = controller.lost()
        return out

    return exp.title, asyncio.run(main())
