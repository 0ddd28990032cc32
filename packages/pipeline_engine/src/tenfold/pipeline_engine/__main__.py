"""``python -m tenfold.pipeline_engine run|check PIPELINE``.

The same commands as ``tenfold pipeline``, without loading every other
system's plugin first: what an engine process (or a supervisor restarting one)
should exec. Errors go through the core's runner, as for ``tenfold``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from tenfold.core.cli import run
    from tenfold.pipeline_engine._supervisor import die_with_supervisor
    from tenfold.pipeline_engine.cli import pipeline_group

    die_with_supervisor()
    run(pipeline_group, argv, prog_name="python -m tenfold.pipeline_engine")


if __name__ == "__main__":
    main()
