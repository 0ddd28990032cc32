"""``tenfold bench --compare REV``: the A/B regression gate on one machine.

Side A is REV, checked out in a git worktree under ``.tenfold/compare/`` with
its own venv (``uv sync --frozen`` from REV's lock, sharing uv's cache, so
the libraries are linked, not downloaded); side B is the working tree and the
venv running this command (or a second revision, ``A..B``). Both sides run
the same driver (:mod:`tenfold.core._abchild`) in their own long-lived
process; for each scenario both prepare our subject outside the timer, warm
up, and then the parent asks them in turn for timed samples, A B B A in even
rounds and B A A B in odd ones. A sample is ``k`` calls of the op, with ``k``
chosen from the warm-up so that a sample lasts at least ``min_sample_s``.

Each round gives one log-ratio of B's time per unit over A's; the row's
change is their Hodges-Lehmann estimate with an exact signed-rank interval
(:mod:`tenfold.core._stats`). A row is a regression only when the whole
interval lies above the threshold (10% more time per unit unless the row
sets its own ``regression_pct``). Stored timings play no part.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from tenfold.core._stats import Verdict, decide, paired_log_ratios, signed_rank_interval
from tenfold.core.errors import BenchError

__all__ = [
    "CompareSettings",
    "GateReport",
    "Row",
    "Side",
    "changed_systems",
    "compare_sides",
    "format_report",
    "prepared_sides",
    "repo_root",
    "run_gate",
]

CHILD = Path(__file__).with_name("_abchild.py")
DEFAULT_THRESHOLD = 0.10
ALL_SYSTEMS_PATHS = ("packages/core/", "uv.lock", "pyproject.toml")
"""Paths whose change can move every system's timings."""

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a label, the tree its code comes from, and its interpreter."""

    label: str
    root: Path
    python: Path
    rev: str | None = None


@dataclass(frozen=True)
class CompareSettings:
    mode: str = "quick"
    rounds: int = 8
    min_rounds: int = 6
    threshold: float = DEFAULT_THRESHOLD
    confidence: float = 0.95
    min_sample_s: float = 0.05
    budget_s: float = 90.0
    """Per scenario: fewer rounds (never under ``min_rounds``) when samples are long."""
    only: tuple[str, ...] = ()
    seed: int = 1234
    fresh_every: int = 2
    """Rounds per pair of driver processes. A process carries its own luck for its whole
    life (where the address-space layout put its hot code and data): two processes of one
    tree can differ by 10-15% on a tight loop. Fresh processes for both sides every few
    rounds turn that luck into noise the interval sees, instead of a bias it cannot.
    0 keeps one pair for the whole scenario."""
    extend_to: int = 0
    """While a row is inconclusive after its rounds, add rounds (half as many again
    each time) up to this many in all, within ``budget_s``: a straddling interval
    is a request for more data, and a real change then usually resolves. 0 means
    three times ``rounds``; set it to ``rounds`` for a fixed-length run."""


@dataclass
class Row:
    """One scenario's comparison (times are nanoseconds per unit, medians over samples)."""

    system: str
    scenario: str
    unit: str = ""
    verdict: Verdict | str = ""
    threshold: float = DEFAULT_THRESHOLD
    base_ns: float | None = None
    head_ns: float | None = None
    change: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    rounds: int = 0
    calls_per_sample: int = 0
    log_ratios: list[float] = field(default_factory=list)
    processes: int = 0
    """Driver processes each side ran this row's rounds in (see ``fresh_every``)."""
    clock: str = ""
    note: str = ""
    error: str = ""

    @property
    def name(self) -> str:
        return f"{self.system}/{self.scenario}"


@dataclass
class GateReport:
    base: str
    head: str
    mode: str
    settings: CompareSettings
    rows: list[Row] = field(default_factory=list)
    systems: list[str] = field(default_factory=list)
    build_s: float = 0.0
    measure_s: float = 0.0
    cleanup_s: float = 0.0
    total_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "regression"]

    @property
    def failures(self) -> list[Row]:
        """Rows the working tree could not run (the gate cannot vouch for them)."""
        return [r for r in self.rows if r.verdict == "error"]

    def as_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "head": self.head,
            "mode": self.mode,
            "settings": asdict(self.settings),
            "systems": self.systems,
            "rows": [asdict(r) | {"name": r.name} for r in self.rows],
            "regressions": [r.name for r in self.regressions],
            "build_s": round(self.build_s, 2),
            "measure_s": round(self.measure_s, 2),
            "cleanup_s": round(self.cleanup_s, 2),
            "total_s": round(self.total_s, 2),
            "notes": self.notes,
        }


# -- git and uv ---------------------------------------------------------------------------------


def _git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def repo_root(start: Path | None = None) -> Path:
    """The git working tree holding ``start`` (the current directory by default)."""
    if shutil.which("git") is None:
        raise BenchError("--compare needs git on PATH")
    proc = subprocess.run(
        ["git", "-C", str(start or Path.cwd()), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"--compare needs a git checkout: {start or Path.cwd()} is not in one")
    return Path(proc.stdout.strip())


def resolve_rev(repo: Path, rev: str) -> str:
    """REV as a full commit id; a bad REV is one clear line."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BenchError(f"--compare {rev}: not a commit in {repo}")
    return proc.stdout.strip()


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``REV`` (REV against the working tree) or ``BASE..HEAD`` (two revisions)."""
    if ".." in spec:
        base, _, head = spec.partition("..")
        if not base or not head or ".." in head:
            raise BenchError(f"--compare {spec}: expected REV or BASE..HEAD")
        return base, head
    if not spec:
        raise BenchError("--compare needs a revision")
    return spec, None


def _uv(repo: Path) -> str:
    pinned = repo / ".tenfold" / "tools" / "bin" / "uv"
    if pinned.is_file():
        return str(pinned)
    found = shutil.which("uv")
    if found is None:
        raise BenchError(f"--compare builds REV's venv with uv: neither {pinned} nor uv on PATH")
    return found


def _base_python() -> Path:
    """The interpreter this venv was made from: both sides get the same Python build."""
    return Path(getattr(sys, "_base_executable", "") or sys.executable)


def _has_group(root: Path, group: str) -> bool:
    try:
        doc = tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return group in doc.get("dependency-groups", {})


def _build_venv(root: Path, uv: str, log: Log) -> None:
    argv = [uv, "sync", "--frozen", "--all-packages", "--python", str(_base_python())]
    if _has_group(root, "peers"):
        argv += ["--group", "peers"]
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    log(f"building {root.name}'s venv: {' '.join(argv[1:])}")
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise BenchError(f"uv sync in {root} failed: {tail}")


def _add_worktree(repo: Path, sha: str) -> Path:
    parent = repo / ".tenfold" / "compare"
    parent.mkdir(parents=True, exist_ok=True)
    # Test data sits beside the checkout (<root>/../shared); give the worktree the same view.
    shared = repo.parent / "shared"
    if shared.exists() and not (parent / "shared").exists():
        with contextlib.suppress(OSError):
            (parent / "shared").symlink_to(shared.resolve())
    root = parent / f"{sha[:12]}-{os.getpid()}"
    if root.exists():
        _remove_worktree(repo, root)
    _git(repo, "worktree", "add", "--detach", "--force", "-q", str(root), sha)
    return root


def _remove_worktree(repo: Path, root: Path) -> None:
    _git(repo, "worktree", "remove", "--force", str(root), check=False)
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
    _git(repo, "worktree", "prune", check=False)


@contextlib.contextmanager
def prepared_sides(
    repo: Path, spec: str, *, log: Log = _quiet, timings: dict[str, float] | None = None
) -> Iterator[tuple[Side, Side]]:
    """Check out and build the revisions ``spec`` names; remove the worktrees afterwards.

    ``REV`` gives (REV, working tree); ``BASE..HEAD`` gives two revisions (one
    worktree when both name the same commit: an A/A run).
    """
    base_rev, head_rev = parse_spec(spec)
    base_sha = resolve_rev(repo, base_rev)
    head_sha = resolve_rev(repo, head_rev) if head_rev is not None else None
    uv = _uv(repo)
    started = time.monotonic()
    made: list[Path] = []
    try:
        roots: dict[str, Path] = {}
        for sha in dict.fromkeys(s for s in (base_sha, head_sha) if s is not None):
            log(f"checking out {sha[:12]} in a worktree")
            root = _add_worktree(repo, sha)
            made.append(root)
            _build_venv(root, uv, log)
            roots[sha] = root
        base = Side(
            _label(base_rev, base_sha),
            roots[base_sha],
            _venv_python(roots[base_sha]),
            base_sha,
        )
        if head_rev is None or head_sha is None:
            head = Side("working tree", repo, Path(sys.executable))
        else:
            head = Side(
                _label(head_rev, head_sha),
                roots[head_sha],
                _venv_python(roots[head_sha]),
                head_sha,
            )
        if timings is not None:
            timings["build_s"] = time.monotonic() - started
        yield base, head
    finally:
        cleaning = time.monotonic()
        for root in made:
            _remove_worktree(repo, root)
        if timings is not None:
            timings["cleanup_s"] = time.monotonic() - cleaning


def _label(rev: str, sha: str) -> str:
    """``main (1a2b3c4d5e6f)``, or just the short id when REV was a commit id."""
    return sha[:12] if sha.startswith(rev.lower()) else f"{rev} ({sha[:12]})"


def _venv_python(root: Path) -> Path:
    return root / ".venv" / "bin" / "python"


def changed_systems(
    repo: Path, base: str, head: str | None, known: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The systems a change touches (from the diff) and the paths that decided it.

    ``packages/<system>/`` touches that system; the core, the lock or the root
    ``pyproject.toml`` touch every system; anything else (docs, baseline) none.
    Without ``head`` the diff is against the working tree, untracked files included.
    """
    args = ["diff", "--name-only", base] + ([head] if head else [])
    paths = _git(repo, *args).splitlines()
    if head is None:
        paths += _git(repo, "ls-files", "--others", "--exclude-standard").splitlines()
    touched: list[str] = []
    reasons: list[str] = []
    for path in sorted(set(paths)):
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in ALL_SYSTEMS_PATHS):
            return list(known), [path]
        parts = path.split("/")
        if len(parts) > 2 and parts[0] == "packages" and parts[1] in known:
            reasons.append(path)
            touched.append(parts[1])
    return [s for s in known if s in touched], reasons


# -- the two driver processes -------------------------------------------------------------------


class _SideFailed(Exception):
    """One side's driver failed or answered with an error."""

    def __init__(self, side: Side, message: str) -> None:
        super().__init__(f"{side.label}: {message}")
        self.side = side


def _sample_cpu() -> int | None:
    """The one CPU both sides' timed calls run on (``TENFOLD_COMPARE_PIN=0``: none).

    Both drivers' calling threads are pinned to the same CPU while they time a
    sample (workers they started earlier keep every CPU). Left to the scheduler,
    A and B tend to stay on different CPUs for their whole lives, and on a virtual
    machine one virtual CPU can lose time to the host (steal, which no run-queue
    reading sees) for seconds at a time, the likely cause of an A/A run that once
    showed one side 12-50% slower in every round of one scenario.
    """
    if os.environ.get("TENFOLD_COMPARE_PIN", "1") == "0" or not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


class _Child:
    """A running driver (:mod:`tenfold.core._abchild`) for one side and one system."""

    def __init__(self, side: Side, target: str, mode: str) -> None:
        self.side = side
        # Closed in close(); the driver's stderr, for the tail shown when it fails.
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        venv = side.python.parent.parent
        env = {
            **os.environ,
            "PYTHONHASHSEED": "0",
            "VIRTUAL_ENV": str(venv),
            "PATH": f"{side.python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.proc = subprocess.Popen(
            [str(side.python), "-P", str(CHILD), target, mode],
            cwd=side.root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
            start_new_session=True,
        )
        self._buf = b""

    def stderr_tail(self, lines: int = 4) -> str:
        self._err.seek(0)
        text = self._err.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def _read_line(self, timeout_s: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _SideFailed(self.side, f"no answer within {timeout_s:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _SideFailed(
                    self.side, f"driver exited {self.proc.wait()}: {self.stderr_tail()}"
                )
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def ask(self, request: dict[str, Any], timeout_s: float = 1800.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        if request.get("cmd") == "run" and "cpu" not in request:
            request = {**request, "cpu": _sample_cpu()}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise _SideFailed(
                self.side, f"driver exited {self.proc.wait()}: {self.stderr_tail()}"
            ) from None
        reply: dict[str, Any] = json.loads(self._read_line(timeout_s))
        if "error" in reply:
            raise _SideFailed(self.side, str(reply["error"]))
        return reply

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.poll() is None:
                self.ask({"cmd": "bye"}, timeout_s=60)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._err.close()


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _net_ns(reply: dict[str, Any]) -> float:
    delay = reply.get("delay_ns")
    return max(1.0, float(reply["ns"]) - (float(delay) if delay is not None else 0.0))


def _sample(child: _Child, calls: int, timeout_s: float) -> tuple[float, bool]:
    """One sample's time per unit, and whether the run-queue wait could be taken out.

    The time is the wall time of ``calls`` calls less the time the calling
    thread sat runnable waiting for a CPU (Linux schedstat). On a busy machine
    that wait is most of the wall time, and it does not scale linearly with the
    work (a process that slept gets the CPU sooner, so a longer sample waits
    proportionally more); taking it out keeps a 15% slower kernel at 15%.
    Time spent blocked (I/O, waiting for workers) stays in.
    """
    reply = child.ask({"cmd": "run", "calls": calls}, timeout_s)
    if reply["units"] <= 0:
        raise _SideFailed(child.side, f"the op reported {reply['units']} units")
    return _net_ns(reply) / float(reply["units"]), reply.get("delay_ns") is not None


def _warm(a: _Child, b: _Child, warmup: int) -> None:
    for _ in range(max(1, warmup)):
        a.ask({"cmd": "run", "calls": 1})
        b.ask({"cmd": "run", "calls": 1})


def _measure_row(
    row: Row,
    a: _Child,
    b: _Child,
    warmup: int,
    settings: CompareSettings,
    log: Log,
    fresh: Callable[[], tuple[_Child, _Child]] | None = None,
) -> tuple[_Child, _Child]:
    """Warm both sides up, pick the calls per sample, run the rounds, fill in the row.

    With ``fresh``, both sides get new (prepared) driver processes every
    ``settings.fresh_every`` rounds; the pair in use at the end is returned.
    """
    _warm(a, b, warmup)
    one_a = a.ask({"cmd": "run", "calls": 1})
    one_b = b.ask({"cmd": "run", "calls": 1})
    if one_a["units"] != one_b["units"]:
        row.note = f"units per call differ (base {one_a['units']}, this {one_b['units']}); compared per unit"
    # Process CPU time is a floor for a call's time: it keeps a misread wait from
    # making a call look free (and a sample absurdly many calls long).
    net_a = max(_net_ns(one_a), float(one_a.get("cpu_ns") or 0))
    net_b = max(_net_ns(one_b), float(one_b.get("cpu_ns") or 0))
    call_s = max(min(net_a, net_b) / 1e9, 1e-7)
    calls = max(1, min(10_000, math.ceil(settings.min_sample_s / call_s)))
    sample_s = max(net_a, net_b) / 1e9 * calls
    rounds = settings.rounds
    if sample_s * 4 * rounds > settings.budget_s:
        rounds = max(settings.min_rounds, int(settings.budget_s / (4 * sample_s)))
    timeout_s = max(300.0, 50 * sample_s)
    log(f"{row.name}: {rounds} rounds of A B B A, {calls} call(s) per sample (~{sample_s:.2f} s)")
    ceiling = settings.extend_to or 3 * rounds
    ceiling = max(rounds, min(ceiling, int(settings.budget_s / (4 * sample_s))))
    pairs: list[tuple[list[float], list[float]]] = []
    a_all: list[float] = []
    b_all: list[float] = []
    all_corrected = True
    processes = 1
    r = 0
    while True:
        while r < rounds:
            if (
                fresh is not None
                and settings.fresh_every > 0
                and r
                and r % settings.fresh_every == 0
            ):
                a, b = fresh()
                _warm(a, b, warmup)
                processes += 1
            order = (a, b, b, a) if r % 2 == 0 else (b, a, a, b)
            got: dict[int, list[float]] = {id(a): [], id(b): []}
            for child in order:
                per_unit, corrected = _sample(child, calls, timeout_s)
                got[id(child)].append(per_unit)
                all_corrected = all_corrected and corrected
            pairs.append((got[id(a)], got[id(b)]))
            a_all += got[id(a)]
            b_all += got[id(b)]
            r += 1
        diffs = paired_log_ratios(pairs)
        interval = signed_rank_interval(diffs, settings.confidence)
        row.verdict = decide(interval, row.threshold)
        if row.verdict != "inconclusive" or rounds >= ceiling:
            break
        more = min(ceiling - rounds, max(2, rounds // 2))
        log(
            f"{row.name}: inconclusive after {rounds} rounds"
            f" ({interval.change_low:+.1%} to {interval.change_high:+.1%}); {more} more"
        )
        rounds += more
    row.base_ns, row.head_ns = _median(a_all), _median(b_all)
    row.change = interval.change
    row.low, row.high = interval.change_low, interval.change_high
    row.confidence = interval.confidence
    row.rounds, row.calls_per_sample = rounds, calls
    row.log_ratios = [round(d, 6) for d in diffs]
    row.clock = "wall less run-queue wait" if all_corrected else "wall"
    row.processes = processes
    return a, b


def compare_sides(
    base: Side,
    head: Side,
    target: str,
    settings: CompareSettings,
    *,
    system: str | None = None,
    log: Log = _quiet,
) -> list[Row]:
    """Compare every scenario of one system (or ``module:attr`` plugin) between two sides."""
    name = system or target
    a = _Child(base, target, settings.mode)
    b = _Child(head, target, settings.mode)
    rows: list[Row] = []
    try:
        try:
            hello_a = a.ask({"cmd": "hello"}, timeout_s=900)
            hello_b = b.ask({"cmd": "hello"}, timeout_s=900)
        except _SideFailed as exc:
            verdict = "error" if exc.side is head else "not compared"
            return [Row(name, "*", verdict=verdict, error=str(exc))]
        name = system or str(hello_b.get("name") or target)
        for side, hello in ((base, hello_a), (head, hello_b)):
            if not Path(hello["core"]).is_relative_to(side.root.resolve()):
                raise BenchError(
                    f"{side.label} runs tenfold.core from {hello['core']}, not from {side.root}:"
                    " sync that tree's venv first (make sync-peers)"
                )
        base_sc = {s["name"]: s for s in hello_a["scenarios"]}
        for sc in hello_b["scenarios"]:
            if settings.only and sc["name"] not in settings.only:
                continue
            own = sc.get("regression_pct")
            row = Row(
                name,
                sc["name"],
                sc["unit"],
                threshold=own / 100 if own else settings.threshold,
            )
            rows.append(row)
            if settings.mode not in sc["modes"]:
                row.verdict, row.note = "skipped", f"runs only in {', '.join(sc['modes'])} mode"
                continue
            if sc["needs_root"] and os.geteuid() != 0:
                row.verdict, row.note = "skipped", "needs root"
                continue
            if sc["name"] not in base_sc:
                row.verdict, row.note = "new", "not in the base revision: nothing to compare"
                continue
            first, second = (a, b) if len(rows) % 2 else (b, a)
            prepare = {"cmd": "prepare", "scenario": sc["name"], "seed": settings.seed}

            def fresh(prepare: dict[str, Any] = prepare) -> tuple[_Child, _Child]:
                nonlocal a, b
                for child in (a, b):
                    with contextlib.suppress(_SideFailed):
                        child.ask({"cmd": "finish"}, timeout_s=300)
                    child.close()
                a = _Child(base, target, settings.mode)
                b = _Child(head, target, settings.mode)
                for child in (a, b):
                    child.ask({"cmd": "hello"}, timeout_s=900)
                    child.ask(prepare)
                return a, b

            try:
                for child in (first, second):
                    child.ask(prepare)
                a, b = _measure_row(row, a, b, sc["warmup"], settings, log, fresh)
            except _SideFailed as exc:
                # Only a failure of this tree fails the gate; a broken base is just not compared.
                row.verdict = "error" if exc.side is head else "not compared"
                row.error = str(exc)
                if a.proc.poll() is not None or b.proc.poll() is not None:
                    break
            finally:
                for child in (a, b):
                    if child.proc.poll() is None:
                        with contextlib.suppress(_SideFailed):
                            child.ask({"cmd": "finish"}, timeout_s=300)
        for gone in sorted(set(base_sc) - {s["name"] for s in hello_b["scenarios"]}):
            if not settings.only or gone in settings.only:
                rows.append(Row(name, gone, verdict="gone", note="in the base revision only"))
    finally:
        a.close()
        b.close()
    return rows


def run_gate(
    spec: str,
    targets: Sequence[str] | None,
    known: Sequence[str],
    settings: CompareSettings,
    *,
    repo: Path | None = None,
    log: Log = _quiet,
) -> GateReport:
    """The whole gate: build the sides, pick the systems (the diff's when ``targets`` is None),
    compare each, and time it all."""
    started = time.monotonic()
    repo = repo or repo_root()
    base_rev, head_rev = parse_spec(spec)
    base_sha = resolve_rev(repo, base_rev)
    head_sha = resolve_rev(repo, head_rev) if head_rev else None
    report = GateReport(
        base=_label(base_rev, base_sha),
        head=_label(head_rev, head_sha) if head_rev and head_sha else "working tree",
        mode=settings.mode,
        settings=settings,
    )
    if targets is None:
        systems, reasons = changed_systems(repo, base_sha, head_sha, known)
        report.notes.append(
            "systems from the diff: "
            + (", ".join(systems) + f" (e.g. {reasons[0]})" if systems else "none touched")
        )
        log(report.notes[-1])
    else:
        systems = list(targets)
    report.systems = systems
    if not systems:
        report.total_s = time.monotonic() - started
        return report
    timings: dict[str, float] = {}
    with prepared_sides(repo, spec, log=log, timings=timings) as (base, head):
        measuring = time.monotonic()
        for target in systems:
            log(f"comparing {target}")
            report.rows += compare_sides(
                base, head, target, settings, system=None if ":" in target else target, log=log
            )
        report.measure_s = time.monotonic() - measuring
    missing = sorted(set(settings.only) - {r.scenario for r in report.rows})
    if missing:
        report.notes.append(f"no scenario named {', '.join(missing)} in {', '.join(systems)}")
    report.build_s = timings.get("build_s", 0.0)
    report.cleanup_s = timings.get("cleanup_s", 0.0)
    report.total_s = time.monotonic() - started
    return report


# -- text -------------------------------------------------------------------------------------------


def _fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} μs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


_VERDICT_TEXT = {
    "regression": "REGRESSION",
    "improvement": "faster",
    "within": "within",
    "inconclusive": "inconclusive",
}


def format_report(report: GateReport) -> str:
    """The gate's table: per row, time per unit on each side, the change and its interval."""
    s = report.settings
    lines = [
        f"tenfold bench --compare: {report.base} (A) vs {report.head} (B), {report.mode} sizes,"
        f" rounds of A B B A, time per unit = wall time less run-queue wait,"
        f" {s.confidence:.0%} intervals (Hodges-Lehmann, signed-rank),"
        f" regression = whole interval above +threshold (default {s.threshold:.0%})",
        *report.notes,
    ]
    if not report.systems:
        lines.append("nothing to compare: no system changed")
    header = ("row", "A per unit", "B per unit", "change", "interval", "rounds", "verdict")
    table: list[tuple[str, ...]] = [header]
    for r in report.rows:
        if r.change is None:
            text = r.verdict + (f": {r.error or r.note}" if (r.error or r.note) else "")
            table.append((r.name, "-", "-", "-", "-", "-", text))
            continue
        verdict = _VERDICT_TEXT.get(str(r.verdict), str(r.verdict))
        verdict += f" (threshold {r.threshold:.0%})"
        if r.note:
            verdict += f"; {r.note}"
        table.append(
            (
                r.name,
                _fmt_ns(r.base_ns),
                _fmt_ns(r.head_ns),
                _pct(r.change),
                f"[{_pct(r.low)}, {_pct(r.high)}] {r.confidence:.1%}",
                f"{r.rounds}x{r.calls_per_sample}",
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table if report.rows else []:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    regs = report.regressions
    inconclusive = [r for r in report.rows if r.verdict == "inconclusive"]
    summary = (
        f"gate: {sum(r.change is not None for r in report.rows)} rows compared, "
        f"{len(regs)} regression(s)"
        + (f" ({', '.join(f'{r.name} {_pct(r.change)}' for r in regs)})" if regs else "")
        + f", {len(inconclusive)} inconclusive, {len(report.failures)} failed;"
        f" took {report.total_s:.1f} s (worktrees and venvs {report.build_s:.1f} s,"
        f" measuring {report.measure_s:.1f} s, cleaning up {report.cleanup_s:.1f} s)"
    )
    lines.append(summary)
    return "\n".join(lines)
