"""The syntax tree of the contract language, and the types the checker attaches to it.

Every node records ``pos``, the byte offset of its first character in the
source; :class:`SourceMap` turns an offset into ``line:col`` only when a
message needs it. Expression nodes carry ``ty`` (set by ``infer_types``) and
``guard`` / ``guard2``: the contract-wide ids of the runtime checks the node
may trigger (0 when it has none). The interpreter and the generated code
report the same guard id when a check fails, which is what the differential
tests compare.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = [
    "BOOL",
    "DEC",
    "DEC_SCALE",
    "PARTY",
    "VOID",
    "Assert",
    "Assign",
    "Binary",
    "BoolLit",
    "Call",
    "CallerRef",
    "Cast",
    "Contract",
    "DecLit",
    "Expr",
    "ExprStmt",
    "FnDecl",
    "For",
    "If",
    "Index",
    "IntLit",
    "Let",
    "Name",
    "Old",
    "Param",
    "ResultRef",
    "Return",
    "SourceMap",
    "StateDecl",
    "Stmt",
    "Ty",
    "Unary",
    "children",
    "int_type",
    "left_spine",
]

DEC_SCALE = 1_000_000
"""Fixed-point decimals hold value * 10**6 in a signed 64-bit integer."""


@dataclass(frozen=True, slots=True)
class Ty:
    """A value type: ``int`` (bits, signed), ``bool``, ``dec``, ``money`` (unit), ``party``, ``map``."""

    kind: str
    bits: int = 64
    signed: bool = True
    unit: str = ""
    size: int = 0
    elem: Ty | None = None

    def __str__(self) -> str:
        if self.kind == "int":
            return f"{'i' if self.signed else 'u'}{self.bits}"
        if self.kind == "money":
            return f"Money[{self.unit}]"
        if self.kind == "map":
            return f"map[{self.size}] of {self.elem}"
        return self.kind

    @property
    def is_numeric(self) -> bool:
        return self.kind in ("int", "dec", "money")

    @property
    def range(self) -> tuple[int, int]:
        """The inclusive range of the stored integer (decimals and money are signed 64-bit)."""
        if self.kind == "bool":
            return (0, 1)
        if self.kind == "int" and not self.signed:
            return (0, (1 << self.bits) - 1)
        bits = self.bits if self.kind == "int" else 64
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def int_type(name: str) -> Ty | None:
    """``i8`` .. ``u64`` to a type, else ``None``."""
    if len(name) >= 2 and name[0] in "iu" and name[1:] in ("8", "16", "32", "64"):
        return Ty("int", int(name[1:]), name[0] == "i")
    return None


BOOL = Ty("bool", 1, False)
DEC = Ty("dec")
PARTY = Ty("party")
VOID = Ty("void", 0)


class SourceMap:
    """Offsets to 1-based ``(line, col)`` for one source text."""

    def __init__(self, text: str, filename: str = "<source>") -> None:
        self.text = text
        self.filename = filename
        self._starts = [0]
        idx = text.find("\n")
        while idx >= 0:
            self._starts.append(idx + 1)
            idx = text.find("\n", idx + 1)

    def line_col(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, pos) - 1
        return line + 1, pos - self._starts[line] + 1

    def line_text(self, line: int) -> str:
        start = self._starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)]

    def where(self, pos: int) -> str:
        line, col = self.line_col(pos)
        return f"{self.filename}:{line}:{col}"


# --- expressions -----------------------------------------------------------


@dataclass(slots=True, eq=False)
class Expr:
    pos: int
    ty: Ty | None = field(default=None, init=False)
    guard: int = field(default=0, init=False)
    height: int = field(default=1, init=False)


@dataclass(slots=True, eq=False)
class IntLit(Expr):
    value: int = 0


@dataclass(slots=True, eq=False)
class DecLit(Expr):
    scaled: int = 0  # value * DEC_SCALE


@dataclass(slots=True, eq=False)
class BoolLit(Expr):
    value: bool = False


@dataclass(slots=True, eq=False)
class Name(Expr):
    id: str = ""
    kind: str = ""  # "local", "param", "state", "loop" (set by the checker)


@dataclass(slots=True, eq=False)
class Index(Expr):
    name: str = ""
    index: Expr | None = None


@dataclass(slots=True, eq=False)
class Call(Expr):
    fn: str = ""
    args: list[Expr] = field(default_factory=list)
    guard2: int = 0  # invariant-before-call check


@dataclass(slots=True, eq=False)
class Unary(Expr):
    op: str = ""
    operand: Expr | None = None


@dataclass(slots=True, eq=False)
class Binary(Expr):
    op: str = ""
    left: Expr | None = None
    right: Expr | None = None
    guard2: int = 0  # division: the overflow check (guard is division by zero)


@dataclass(slots=True, eq=False)
class Cast(Expr):
    expr: Expr | None = None
    target: Ty | None = None


@dataclass(slots=True, eq=False)
class Old(Expr):
    name: str = ""


@dataclass(slots=True, eq=False)
class ResultRef(Expr):
    pass


@dataclass(slots=True, eq=False)
class CallerRef(Expr):
    pass


def children(e: Expr) -> list[Expr]:
    """The direct sub-expressions of ``e`` (for the iterative walkers of later passes)."""
    if isinstance(e, Binary):
        return [x for x in (e.left, e.right) if x is not None]
    if isinstance(e, Unary):
        return [e.operand] if e.operand is not None else []
    if isinstance(e, Cast):
        return [e.expr] if e.expr is not None else []
    if isinstance(e, Index):
        return [e.index] if e.index is not None else []
    if isinstance(e, Call):
        return list(e.args)
    return []


def left_spine(e: Binary) -> tuple[Expr, list[Binary]]:
    """The leftmost operand under a chain of binary nodes, and the chain innermost first.

    ``a + b + c + d`` parses as ``((a + b) + c) + d``: a left spine as long as the
    sum, which is not nesting. Every pass walks a spine with a loop (evaluate the
    leftmost operand, then fold each node's right operand in), so a flat sum of
    any length costs no recursion; only right operands and parenthesised
    sub-expressions recurse, and those are what ``max_depth`` bounds.
    """
    chain = [e]
    node = e
    while isinstance(node.left, Binary):
        node = node.left
        chain.append(node)
    chain.reverse()
    assert node.left is not None
    return node.left, chain


# --- statements ------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Stmt:
    pos: int


@dataclass(slots=True, eq=False)
class Let(Stmt):
    name: str = ""
    declared: Ty | None = None
    value: Expr | None = None


@dataclass(slots=True, eq=False)
class Assign(Stmt):
    target: Name | Index | None = None
    value: Expr | None = None


@dataclass(slots=True, eq=False)
class If(Stmt):
    cond: Expr | None = None
    then: list[Stmt] = field(default_factory=list)
    orelse: list[Stmt] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class For(Stmt):
    var: str = ""
    lo: int = 0
    hi: int = 0
    body: list[Stmt] = field(default_factory=list)
    # ``for i in 0..N invariant EXPR { ... }``: checked when the loop starts (i = lo) and
    # after every iteration (i = the next value), so it holds after the loop with i = hi.
    invariants: list[Expr] = field(default_factory=list)
    invariant_guards: list[int] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Return(Stmt):
    value: Expr | None = None


@dataclass(slots=True, eq=False)
class Assert(Stmt):
    """``assert`` (must be proved; kind "assert") or ``check`` (a runtime revert; kind "check")."""

    cond: Expr | None = None
    message: str = ""
    kind: str = "assert"
    guard: int = 0


@dataclass(slots=True, eq=False)
class ExprStmt(Stmt):
    expr: Expr | None = None


# --- declarations ----------------------------------------------------------


@dataclass(slots=True, eq=False)
class Param:
    pos: int
    name: str
    ty: Ty


@dataclass(slots=True, eq=False)
class StateDecl:
    pos: int
    name: str
    ty: Ty
    init: int = 0  # the stored integer (decimals scaled, bools 0/1)
    init_expr: Expr | None = None
    slot: int = 0  # first 64-bit slot in the state buffer


@dataclass(slots=True, eq=False)
class FnDecl:
    pos: int
    name: str
    params: list[Param]
    ret: Ty
    requires: list[Expr] = field(default_factory=list)
    ensures: list[Expr] = field(default_factory=list)
    only: list[tuple[int, str]] = field(default_factory=list)
    body: list[Stmt] = field(default_factory=list)
    # set by the checker
    requires_guards: list[int] = field(default_factory=list)
    ensures_guards: list[int] = field(default_factory=list)
    only_guards: list[int] = field(default_factory=list)
    invariant_guards: list[int] = field(default_factory=list)
    locals: dict[str, Ty] = field(default_factory=dict)
    writes: set[str] = field(default_factory=set)
    callees: set[str] = field(default_factory=set)
    steps: int = 0
    guard_base: int = 0
    body_pos: int = 0
    end: int = 0


@dataclass(slots=True, eq=False)
class Contract:
    pos: int
    name: str
    parties: list[str] = field(default_factory=list)
    states: list[StateDecl] = field(default_factory=list)
    invariants: list[Expr] = field(default_factory=list)
    fns: list[FnDecl] = field(default_factory=list)
    # set by the checker
    guards: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # id -> kind, msg, pos
    slots: int = 0

    _state_index: dict[str, StateDecl] = field(default_factory=dict, repr=False)
    _fn_index: dict[str, FnDecl] = field(default_factory=dict, repr=False)

    def state(self, name: str) -> StateDecl | None:
        # The indexes are rebuilt when the lists grew (the parser appends while it reads).
        if len(self._state_index) != len(self.states):
            self._state_index = {}
            for decl in reversed(self.states):
                self._state_index[decl.name] = decl
            if len(self._state_index) != len(self.states):  # duplicates: the first one wins
                return next((d for d in self.states if d.name == name), None)
        return self._state_index.get(name)

    def fn(self, name: str) -> FnDecl | None:
        if len(self._fn_index) != len(self.fns):
            self._fn_index = {}
            for decl in reversed(self.fns):
                self._fn_index[decl.name] = decl
            if len(self._fn_index) != len(self.fns):
                return next((f for f in self.fns if f.name == name), None)
        return self._fn_index.get(name)
