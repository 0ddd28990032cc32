"""The bad-input gate's cases: every CLI command that reads a file or a string, fed garbage.

Commands are discovered by walking the ``tenfold`` click tree, so a new command is
covered without editing the gate. For each parameter that carries user input, the
cases are the inputs a careless user or an attacker hands over: nothing, a missing
path, a directory, random bytes, invalid UTF-8, 100,000 levels of nesting in the
command's own syntax, one enormous token, an output path that cannot be written,
and numbers out of range. The promise checked for each (by the core's tests): exit
2 (or a clean 0/1 for input that may be valid: an unusual number, an empty file, one
very long name), at most a few lines on
stderr, no traceback, no file left behind, within a time bound.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import click

__all__ = ["NESTING", "OPT_OUT", "OUTPUTS", "Case", "commands", "fuzz_cases"]

DEPTH = 100_000

# The command's own syntax, for the deep-nesting case (default: JSON-like brackets).
NESTING: Mapping[str, Callable[[int], bytes]] = {
    "json": lambda n: b"[" * n + b"]" * n,
    "toml": lambda n: b"a = " + b"[" * n + b"]" * n + b"\n",
    "expression": lambda n: b"(" * n + b"x" + b")" * n,
    "turtle": lambda n: b"<a> <b> " + b"( " * n + b") " * n + b".\n",
    "datalog": lambda n: b"p(X) :- " + b"(" * n + b"q(X)" + b")" * n + b".\n",
    "contract": lambda n: (
        b"contract C { fn f() -> u64 { return " + b"(" * n + b"1" + b")" * n + b"; } }\n"
    ),
}

# The file name each syntax is read from (commands choose the parser by suffix).
SUFFIX: Mapping[str, str] = {
    "json": ".json",
    "toml": ".toml",
    "expression": ".txt",
    "turtle": ".ttl",
    "datalog": ".dl",
    "contract": ".tc",
}

# Which syntax each command reads (by command path).
SYNTAX: Mapping[str, str] = {
    "chaos run": "toml",
    "chaos validate": "toml",
    "compile": "contract",
    "contract run": "contract",
    "symbolic reduce": "expression",
    "symbolic match": "expression",
    "symbolic saturate": "expression",
    "lattice load": "turtle",
    "lattice query": "expression",
    "lattice explain": "expression",
    "lattice reason": "datalog",
    "pipeline check": "toml",
    "pipeline run": "toml",
    "autoblock run": "toml",
    "config": "toml",
}

# Parameters that name a file the command writes.
OUTPUTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("compile", "output"),
        ("compile", "out"),
        ("learn fit", "out"),
        ("learn fit", "report_path"),
        ("learn predict", "out"),
        ("learn report", "out"),
        ("ledger proof", "out"),
        ("ledger snapshot", "out"),
        ("lattice export", "out"),
        ("platform train-detector", "out"),
        ("attest tls-bundle", "directory"),
        ("credentials tls", "directory"),
        ("profile", "out"),
        ("bench", "report"),
        ("bench", "save_baseline"),
    }
)

# Commands the gate does not run, and why.
OPT_OUT: Mapping[str, str] = {
    "bench": "runs benchmarks for minutes; its inputs are system and scenario names",
    "profile": "runs a benchmark under py-spy and memray",
    "services up": "starts real servers in the background",
    "services down": "stops the servers of this checkout",
    "attest agent": "a daemon serving a TPM until stopped",
    "attest registrar": "a daemon serving until stopped",
    "attest verifier": "a daemon serving until stopped",
    "kernel build": "no user input: compiles the BPF objects",
    "kernel cleanup": "no user input: removes what the kernel commands left",
    "kernel bench": "no user input but a count: loads BPF and measures",
    "kernel sockfilter": "attaches a socket filter for a duration; covered by its own tests",
    "kernel trace syscalls": "traces the machine for a duration; covered by its own tests",
    "kernel xdp follow": "reads a decision stream until it ends; covered by its own tests",
    "pipeline run": "consumes a stream until stopped; `pipeline check` parses the same files",
    "parallel bench": "runs a benchmark; its inputs are sizes",
    "lattice serve": "a server until stopped; the endpoint suite covers its inputs",
    "learn serve": "a server until stopped; the endpoint suite covers its inputs",
    "ledger serve": "a server until stopped; the endpoint suite covers its inputs",
    "platform up": "creates namespaces and starts an XDP bouncer; the platform tests cover it",
    "platform down": "tears down what platform up made in its home folder",
    "platform status": "reports on a home folder; its only input is that folder",
    "platform _bouncer": "internal: the bouncer process platform up starts",
    "platform faults": "brings up a platform and runs its chaos experiment (root, a minute); "
    "test_platform_faults_cli feeds it bad files and numbers",
}


@dataclass(frozen=True)
class Case:
    """One bad input for one parameter of one command."""

    command: str
    param: str
    kind: str
    argv: tuple[str, ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)
    """Files to create (relative to the case's folder) before running."""
    dirs: tuple[str, ...] = ()
    lenient: bool = False
    """Input that may be valid (a number out of the usual range, an empty file, one very
    long name): exit 0 or 1 is fine too, and what a successful run writes is its output;
    a traceback, a hang or a flood of stderr still fail."""

    @property
    def id(self) -> str:
        return f"{self.command}:{self.param}:{self.kind}"


def commands(root: click.Group) -> Iterator[tuple[str, click.Command]]:
    """Every leaf command under ``root``, as ``("ledger get", command)``."""
    ctx = click.Context(root)

    def walk(group: click.Group, path: list[str]) -> Iterator[tuple[str, click.Command]]:
        for name in group.list_commands(ctx):
            sub = group.get_command(ctx, name)
            real = getattr(sub, "real", None)
            if callable(real):
                sub = real()
            if isinstance(sub, click.Group):
                yield from walk(sub, [*path, name])
            elif sub is not None:
                yield " ".join([*path, name]), sub

    yield from walk(root, [])


def _is_path(param: click.Parameter) -> bool:
    return isinstance(param.type, (click.Path, click.File))


def _placeholder(param: click.Parameter) -> str:
    """A harmless value for a required parameter the case is not about."""
    if isinstance(param.type, click.Choice):
        return str(param.type.choices[0])
    if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
        return "1"
    if _is_path(param):
        return "placeholder.txt"
    if param.type.name == "url":
        return "http://127.0.0.1:9"  # the discard port: refused at once
    return "x"


def _flag(param: click.Option) -> str:
    longs = [o for o in param.opts if o.startswith("--")]
    return (longs or param.opts)[0]


def _argv_for(
    command: click.Command, target: click.Parameter, value: str | None
) -> tuple[str, ...]:
    """The command line with ``value`` for ``target`` and placeholders for the rest."""
    options: list[str] = []
    arguments: list[str] = []
    for param in command.params:
        if param.name == "help" or not isinstance(param, (click.Option, click.Argument)):
            continue
        if param is target:
            if value is None:
                continue
            if isinstance(param, click.Option):
                options += [_flag(param), value]
            else:
                arguments.append(value)
        elif param.required:
            if isinstance(param, click.Option):
                options += [_flag(param), _placeholder(param)]
            else:
                arguments.append(_placeholder(param))
    # Options first, then "--": every argument after it is an argument, even "-5" or "(".
    return (*options, "--", *arguments) if arguments else tuple(options)


def fuzz_cases(root: click.Group, seed: int = 1) -> Iterator[Case]:
    """Every case for every command under ``root`` that is not opted out."""
    rng = random.Random(seed)
    noise = bytes(rng.getrandbits(8) for _ in range(4096))
    bad_utf8 = b"caf\xc3 \xff\xfe\xfd line\n\x80 second line\n"
    huge = b"a" * 10_000_000
    for name, command in commands(root):
        if name in OPT_OUT:
            continue
        nest = NESTING[SYNTAX.get(name, "json")](DEPTH)
        for param in command.params:
            if param.name in ("help", "as_json") or not isinstance(
                param, (click.Option, click.Argument)
            ):
                continue
            if isinstance(param, click.Option) and param.is_flag:
                continue
            pname = param.name or "?"

            def case(kind: str, value: str | None, **extra: object) -> Case:
                argv = _argv_for(command, param, value)  # noqa: B023
                files = dict(extra.pop("files", {}))  # type: ignore[call-overload]
                files.setdefault("placeholder.txt", b"")
                return Case(name, pname, kind, argv, files, **extra)  # type: ignore[arg-type]  # noqa: B023

            if (name, pname) in OUTPUTS:
                yield case("unwritable output", "blocker/out", files={"blocker": b"a file"})
                continue
            if isinstance(param.type, click.Path) and not param.type.file_okay:
                # A folder is asked for: a missing one and a regular file are the bad inputs.
                yield case("missing path", "no/such/dir")
                yield case("a file, not a folder", "afile", files={"afile": b"x"})
            elif _is_path(param):
                source = "input" + SUFFIX[SYNTAX.get(name, "json")]
                yield case("missing path", "no/such/file")
                yield case("directory", "adir", dirs=("adir",))
                yield case("empty file", source, files={source: b""}, lenient=True)
                yield case("random bytes", source, files={source: noise})
                yield case("invalid UTF-8", source, files={source: bad_utf8})
                yield case("deep nesting", source, files={source: nest})
                yield case("10 MB token", source, files={source: huge})
            elif isinstance(param.type, click.types.IntParamType):
                yield case("negative number", "-1", lenient=True)
                yield case("huge number", str(10**30), lenient=True)
            elif isinstance(param.type, click.types.FloatParamType):
                yield case("not a number", "nan", lenient=True)
                yield case("infinite number", "inf", lenient=True)
                yield case("negative number", "-1", lenient=True)
            elif not isinstance(param.type, (click.Choice, click.types.BoolParamType)):
                # Text, or a type of our own that parses text (a URL, an id).
                yield case("empty string", "")
                yield case("deep nesting", nest[:100_000].decode("latin-1"))
                yield case("long token", "a" * 100_000, lenient=True)
                yield case("invalid UTF-8", "caf\udcc3 \udcff")
