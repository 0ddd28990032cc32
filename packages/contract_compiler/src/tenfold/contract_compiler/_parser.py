"""Lexer (one compiled regex) and Pratt parser with a depth limit and error recovery.

Recovery keeps going after a syntax error by skipping to the next ``;``, ``}``
or declaration keyword, so one run reports several errors (up to
``max_errors``). Nesting is bounded by ``max_depth``: the parser counts its own
recursion and every node's height, so a 10,000-deep input ends in one clear
depth error instead of a ``RecursionError``, and every later pass (checker,
solver, code generator) walks trees no taller than the limit.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from tenfold.contract_compiler._ast import (
    BOOL,
    DEC,
    DEC_SCALE,
    PARTY,
    VOID,
    Assert,
    Assign,
    Binary,
    BoolLit,
    Call,
    CallerRef,
    Cast,
    Contract,
    DecLit,
    Expr,
    ExprStmt,
    FnDecl,
    For,
    If,
    Index,
    IntLit,
    Let,
    Name,
    Old,
    Param,
    ResultRef,
    Return,
    SourceMap,
    StateDecl,
    Stmt,
    Ty,
    Unary,
    int_type,
)
from tenfold.contract_compiler.errors import CompileError, Diagnostic

__all__ = [
    "KEYWORDS",
    "Token",
    "lex",
    "make_diagnostic",
    "parse_contract",
    "parse_expression",
]

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>//[^\n]*)
  | (?P<dec>[0-9]+\.[0-9]+)
  | (?P<int>0x[0-9a-fA-F_]+|[0-9][0-9_]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<ustr>"[^\n]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==>|\.\.|->|==|!=|<=|>=|&&|\|\||[-+*/%<>=!(){}\[\];:,])
  | (?P<bad>.)
    """,
    re.VERBOSE | re.DOTALL,
)

KEYWORDS = frozenset(
    [
        "contract",
        "party",
        "state",
        "invariant",
        "fn",
        "requires",
        "ensures",
        "only",
        "let",
        "if",
        "else",
        "for",
        "in",
        "return",
        "assert",
        "check",
        "true",
        "false",
        "old",
        "result",
        "caller",
        "as",
        "map",
        "of",
        "while",
        "loop",
    ]
)

MAX_INT_LITERAL = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # int dec str ident kw op eof
    text: str
    pos: int


def lex(text: str, smap: SourceMap, diags: list[Diagnostic], max_errors: int) -> list[Token]:
    """Split ``text`` into tokens; stray characters and unterminated strings become diagnostics."""
    out: list[Token] = []
    append = out.append
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in {"ws", "comment"}:
            continue
        word = m.group()
        pos = m.start()
        if kind == "ident":
            append(Token("kw" if word in KEYWORDS else "ident", word, pos))
        elif kind in {"bad", "ustr"}:
            what = (
                "unterminated string literal (expected a closing '\"' on the same line)"
                if kind == "ustr"
                else f"stray character {word!r} (expected an operator, name or literal)"
            )
            _diag(diags, smap, pos, what)
            if len(diags) >= max_errors:
                break
        else:
            append(Token(kind or "bad", word, pos))
    out.append(Token("eof", "", len(text)))
    return out


def _diag(
    diags: list[Diagnostic], smap: SourceMap, pos: int, message: str, severity: str = "error"
) -> None:
    diags.append(make_diagnostic(smap, pos, message, severity))


def make_diagnostic(smap: SourceMap, pos: int, message: str, severity: str = "error") -> Diagnostic:
    """A diagnostic at ``pos`` whose quoted line is clipped to about 80 characters."""
    line, col = smap.line_col(pos)
    text = smap.line_text(line)
    start = max(0, col - 40)
    clipped = text[start : start + 80].expandtabs(1)
    return Diagnostic(smap.filename, line, col, message, severity, clipped, col - start)


class _Abort(Exception):
    """Stops parsing: too many errors, or the depth limit."""


class _SyntaxError(Exception):
    """One syntax error; the statement-level loop recovers from it."""


# Binding powers of the infix operators (higher binds tighter).
_INFIX = {
    "==>": 1,
    "||": 2,
    "&&": 3,
    "==": 4,
    "!=": 4,
    "<": 5,
    "<=": 5,
    ">": 5,
    ">=": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
    "%": 7,
    "as": 9,
}
_PREFIX_BP = 8
_MEMBER_KEYWORDS = frozenset({"fn", "state", "party", "invariant"})


class Parser:
    def __init__(
        self,
        tokens: list[Token],
        smap: SourceMap,
        diags: list[Diagnostic],
        *,
        max_depth: int = 200,
        max_errors: int = 20,
    ) -> None:
        self.toks = tokens
        self.i = 0
        self.smap = smap
        self.diags = diags
        self.max_depth = max_depth
        self.max_errors = max_errors
        self.depth = 0

    # -- helpers ----------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def advance(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def at(self, text: str) -> bool:
        tok = self.toks[self.i]
        return tok.text == text and tok.kind in ("op", "kw")

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def describe(self, tok: Token) -> str:
        return "end of file" if tok.kind == "eof" else repr(tok.text)

    def error(self, pos: int, message: str) -> _SyntaxError:
        _diag(self.diags, self.smap, pos, message)
        if len(self.diags) >= self.max_errors:
            raise _Abort
        return _SyntaxError(message)

    def expect(self, text: str, context: str = "") -> Token:
        if self.at(text):
            return self.advance()
        where = f" {context}" if context else ""
        raise self.error(self.tok.pos, f"expected '{text}'{where}, found {self.describe(self.tok)}")

    def ident(self, what: str) -> Token:
        tok = self.tok
        if tok.kind == "ident":
            return self.advance()
        found = f"keyword '{tok.text}'" if tok.kind == "kw" else self.describe(tok)
        raise self.error(tok.pos, f"expected {what}, found {found}")

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            _diag(
                self.diags,
                self.smap,
                pos,
                f"nesting deeper than the limit of {self.max_depth} levels",
            )
            raise _Abort

    def check_height(self, node: Expr) -> Expr:
        if node.height > self.max_depth:
            _diag(
                self.diags,
                self.smap,
                node.pos,
                f"expression nested deeper than the limit of {self.max_depth} levels",
            )
            raise _Abort
        return node

    # -- types ------------------------------------------------------------
    def parse_type(self, allow_map: bool = False) -> Ty:
        tok = self.tok
        if tok.kind == "kw" and tok.text == "map":
            if not allow_map:
                raise self.error(tok.pos, "maps are only allowed as state variables")
            self.advance()
            self.expect("[", "after 'map'")
            size_tok = self.tok
            if size_tok.kind != "int":
                raise self.error(size_tok.pos, "expected the map's size (an integer literal)")
            self.advance()
            size = _int_value(size_tok.text)
            if not 1 <= size <= 1_000_000:
                raise self.error(size_tok.pos, "map size must be between 1 and 1,000,000")
            self.expect("]", "after the map size")
            self.expect("of", "in a map type")
            elem = self.parse_type()
            return Ty("map", size=size, elem=elem)
        if tok.kind == "kw" and tok.text == "party":
            self.advance()
            return PARTY
        name = self.ident("a type").text
        simple = int_type(name)
        if simple is not None:
            return simple
        if name == "bool":
            return BOOL
        if name == "dec":
            return DEC
        if name == "party":
            return PARTY
        if name == "Money":
            self.expect("[", "after 'Money' (a unit such as Money[USD])")
            unit = self.ident("a unit name").text
            self.expect("]", "after the unit")
            return Ty("money", unit=unit)
        raise self.error(
            tok.pos,
            f"unknown type '{name}' (expected i8..i64, u8..u64, bool, dec, party, Money[UNIT])",
        )

    # -- expressions --------------------------------------------------------
    def parse_expression(self, min_bp: int = 0) -> Expr:
        """Pratt loop: a prefix expression, then infix operators binding tighter than ``min_bp``."""
        self.enter(self.tok.pos)
        try:
            left = self.parse_prefix()
            while True:
                tok = self.tok
                if tok.kind not in ("op", "kw"):
                    break
                bp = _INFIX.get(tok.text)
                if bp is None or bp <= min_bp:
                    break
                self.advance()
                if tok.text == "as":
                    target = self.parse_type()
                    node: Expr = Cast(tok.pos, left, target)
                    node.height = left.height + 1
                else:
                    # ==> is right-associative; comparisons do not chain.
                    right_bp = bp - 1 if tok.text == "==>" else bp
                    right = self.parse_expression(right_bp)
                    node = Binary(tok.pos, tok.text, left, right)
                    # Nesting, not size: the left operand of a chain sits at the same
                    # level (every pass folds a left spine in a loop), the right one below.
                    node.height = max(left.height, right.height + 1)
                    if bp in (4, 5) and self.tok.text in _INFIX and _INFIX[self.tok.text] == bp:
                        raise self.error(
                            self.tok.pos,
                            f"comparisons do not chain: add parentheses around "
                            f"'{tok.text}' or '{self.tok.text}'",
                        )
                left = self.check_height(node)
            return left
        finally:
            self.depth -= 1

    def parse_prefix(self) -> Expr:
        tok = self.advance()
        kind, text = tok.kind, tok.text
        if kind == "int":
            value = _int_value(text)
            if value > MAX_INT_LITERAL:
                raise self.error(tok.pos, f"integer literal {text} does not fit in 64 bits")
            return IntLit(tok.pos, value)
        if kind == "dec":
            whole, frac = text.split(".")
            if len(frac) > 6:
                raise self.error(
                    tok.pos, f"decimal literal {text} has more than 6 fractional digits"
                )
            scaled = int(whole) * DEC_SCALE + int(frac.ljust(6, "0"))
            if scaled >= 1 << 63:
                raise self.error(tok.pos, f"decimal literal {text} does not fit in dec")
            return DecLit(tok.pos, scaled)
        if kind == "ident":
            if self.at("("):
                self.advance()
                args: list[Expr] = []
                if not self.at(")"):
                    args.append(self.parse_expression())
                    while self.accept(","):
                        args.append(self.parse_expression())
                self.expect(")", "to close the call's argument list")
                call = Call(tok.pos, text, args)
                call.height = 1 + max((a.height for a in args), default=0)
                return call
            if self.at("["):
                self.advance()
                index = self.parse_expression()
                self.expect("]", "to close the index")
                node = Index(tok.pos, text, index)
                node.height = index.height + 1
                return node
            return Name(tok.pos, text)
        if kind == "op":
            if text == "(":
                inner = self.parse_expression()
                self.expect(")", "to close '('")
                return inner
            if text in ("-", "!"):
                operand = self.parse_expression(_PREFIX_BP)
                if text == "-" and isinstance(operand, IntLit | DecLit):
                    return _negate_literal(operand)
                unary = Unary(tok.pos, text, operand)
                unary.height = operand.height + 1
                return unary
        if kind == "kw":
            if text in ("true", "false"):
                return BoolLit(tok.pos, text == "true")
            if text == "result":
                return ResultRef(tok.pos)
            if text == "caller":
                return CallerRef(tok.pos)
            if text == "old":
                self.expect("(", "after 'old'")
                name = self.ident("a state variable name inside old(...)")
                self.expect(")", "to close old(...)")
                return Old(tok.pos, name.text)
        if kind == "str":
            raise self.error(tok.pos, "a string is only allowed as the message of assert/check")
        raise self.error(tok.pos, f"expected an expression, found {self.describe(tok)}")

    # -- statements -------------------------------------------------------
    def parse_block(self) -> list[Stmt]:
        open_tok = self.expect("{", "to open a block")
        self.enter(open_tok.pos)
        try:
            body: list[Stmt] = []
            while not self.at("}"):
                if self.tok.kind == "eof":
                    raise self.error(
                        self.tok.pos,
                        f"expected '}}' to close the block opened at "
                        f"{self.smap.where(open_tok.pos)}, found end of file",
                    )
                if self.tok.kind == "kw" and self.tok.text in _MEMBER_KEYWORDS:
                    raise self.error(
                        self.tok.pos,
                        f"expected '}}' to close the block opened at "
                        f"{self.smap.where(open_tok.pos)}, found {self.describe(self.tok)}",
                    )
                try:
                    body.append(self.parse_statement())
                except _SyntaxError:
                    self.synchronize()
            self.advance()
            return body
        finally:
            self.depth -= 1

    def synchronize(self) -> None:
        """Skip to just after the next ';' or to the next '}' / declaration keyword."""
        while True:
            tok = self.tok
            if tok.kind == "eof":
                return
            if tok.kind == "op" and tok.text == ";":
                self.advance()
                return
            if tok.kind == "op" and tok.text == "}":
                return
            if tok.kind == "kw" and tok.text in _MEMBER_KEYWORDS | {"let", "if", "for", "return"}:
                return
            self.advance()

    def parse_statement(self) -> Stmt:
        tok = self.tok
        if tok.kind == "kw":
            word = tok.text
            if word == "let":
                self.advance()
                name = self.ident("a variable name after 'let'")
                declared = self.parse_type() if self.accept(":") else None
                self.expect("=", "in a let statement")
                value = self.parse_expression()
                self.expect(";", "after the let statement")
                return Let(tok.pos, name.text, declared, value)
            if word == "if":
                return self.parse_if()
            if word == "for":
                self.advance()
                var = self.ident("a loop variable after 'for'")
                self.expect("in", "in a for loop (for i in 0..N)")
                lo = self.loop_bound()
                self.expect("..", "between the loop bounds (for i in 0..N)")
                hi = self.loop_bound()
                invariants: list[Expr] = []
                while self.accept("invariant"):
                    invariants.append(self.parse_expression())
                body = self.parse_block()
                return For(tok.pos, var.text, lo, hi, body, invariants)
            if word in ("while", "loop"):
                self.error(
                    tok.pos,
                    f"'{word}' loops are not allowed: every loop must be bounded "
                    f"(expected 'for i in 0..N' with literal bounds)",
                )
                self.skip_braced()
                return If(tok.pos, BoolLit(tok.pos, False), [], [])
            if word == "return":
                self.advance()
                ret_value = None if self.at(";") else self.parse_expression()
                self.expect(";", "after the return statement")
                return Return(tok.pos, ret_value)
            if word in ("assert", "check"):
                self.advance()
                cond = self.parse_expression()
                message = ""
                if self.accept(","):
                    msg_tok = self.tok
                    if msg_tok.kind != "str":
                        raise self.error(msg_tok.pos, "expected a message string after ','")
                    self.advance()
                    message = _unquote(msg_tok.text)
                self.expect(";", f"after the {word} statement")
                return Assert(tok.pos, cond, message, word)
        target = self.parse_expression()
        if self.at("="):
            op_tok = self.advance()
            if not isinstance(target, Name | Index):
                raise self.error(target.pos, "expected a variable or map element before '='")
            value = self.parse_expression()
            self.expect(";", "after the assignment")
            return Assign(op_tok.pos, target, value)
        self.expect(";", "after the expression")
        if not isinstance(target, Call):
            raise self.error(target.pos, "an expression statement must be a function call")
        return ExprStmt(tok.pos, target)

    def skip_braced(self) -> None:
        """Skip to the next '{' and past its matching '}' (recovery from a rejected loop)."""
        while self.tok.kind != "eof" and not self.at("{"):
            if self.at(";") or self.at("}"):
                return
            self.advance()
        depth = 0
        while self.tok.kind != "eof":
            tok = self.advance()
            if tok.kind == "op" and tok.text == "{":
                depth += 1
            elif tok.kind == "op" and tok.text == "}":
                depth -= 1
                if depth == 0:
                    return

    def parse_if(self) -> If:
        tok = self.advance()
        self.enter(tok.pos)
        try:
            cond = self.parse_expression()
            then = self.parse_block()
            orelse: list[Stmt] = []
            if self.accept("else"):
                orelse = [self.parse_if()] if self.at("if") else self.parse_block()
            return If(tok.pos, cond, then, orelse)
        finally:
            self.depth -= 1

    def loop_bound(self) -> int:
        tok = self.tok
        if tok.kind == "int":
            self.advance()
            return _int_value(tok.text)
        raise self.error(
            tok.pos,
            f"expected an integer literal loop bound, found {self.describe(tok)} "
            f"(loops must have static bounds)",
        )

    # -- declarations -----------------------------------------------------
    def parse_contract(self) -> Contract | None:
        while self.tok.kind != "eof" and not self.at("contract"):
            try:
                raise self.error(
                    self.tok.pos, f"expected 'contract', found {self.describe(self.tok)}"
                )
            except _SyntaxError:
                self.advance()
                while self.tok.kind != "eof" and not self.at("contract"):
                    self.advance()
        if self.tok.kind == "eof":
            if not self.diags:
                self.error(self.tok.pos, "expected 'contract NAME { ... }', found end of file")
            return None
        start = self.advance()
        name = self.ident("the contract name")
        contract = Contract(start.pos, name.text)
        open_tok = self.expect("{", "after the contract name")
        while not self.at("}"):
            if self.tok.kind == "eof":
                raise self.error(
                    self.tok.pos,
                    f"expected '}}' to close the contract opened at "
                    f"{self.smap.where(open_tok.pos)}, found end of file",
                )
            try:
                self.parse_member(contract)
            except _SyntaxError:
                self.skip_member()
        self.advance()
        if self.tok.kind != "eof":
            self.error(self.tok.pos, f"expected end of file, found {self.describe(self.tok)}")
        return contract

    def skip_member(self) -> None:
        """Recover at the next member keyword at brace depth 0 (or the contract's '}')."""
        depth = 0
        while self.tok.kind != "eof":
            tok = self.tok
            if tok.kind == "op" and tok.text == "{":
                depth += 1
            elif tok.kind == "op" and tok.text == "}":
                if depth == 0:
                    return
                depth -= 1
                if depth == 0:
                    self.advance()
                    return
            elif depth == 0 and tok.kind == "kw" and tok.text in _MEMBER_KEYWORDS:
                return
            self.advance()

    def parse_member(self, contract: Contract) -> None:
        tok = self.tok
        word = tok.text if tok.kind == "kw" else ""
        if word == "party":
            self.advance()
            name = self.ident("a party name")
            self.expect(";", "after the party declaration")
            contract.parties.append(name.text)
            contract.states.append(StateDecl(name.pos, name.text, PARTY))
        elif word == "state":
            self.advance()
            name = self.ident("a state variable name")
            self.expect(":", "after the state variable name")
            ty = self.parse_type(allow_map=True)
            init = self.parse_expression() if self.accept("=") else None
            self.expect(";", "after the state declaration")
            contract.states.append(StateDecl(name.pos, name.text, ty, 0, init))
        elif word == "invariant":
            self.advance()
            contract.invariants.append(self.parse_expression())
            self.expect(";", "after the invariant")
        elif word == "fn":
            contract.fns.append(self.parse_fn())
        else:
            raise self.error(
                tok.pos,
                f"expected a member (party, state, invariant or fn), found {self.describe(tok)}",
            )

    def parse_fn(self) -> FnDecl:
        self.advance()
        name = self.ident("a function name")
        self.expect("(", "after the function name")
        params: list[Param] = []
        if not self.at(")"):
            while True:
                pname = self.ident("a parameter name")
                self.expect(":", "after the parameter name")
                params.append(Param(pname.pos, pname.text, self.parse_type()))
                if not self.accept(","):
                    break
        self.expect(")", "to close the parameter list")
        ret = self.parse_type() if self.accept("->") else VOID
        fn = FnDecl(name.pos, name.text, params, ret)
        while True:
            if self.accept("requires"):
                fn.requires.append(self.parse_expression())
            elif self.accept("ensures"):
                fn.ensures.append(self.parse_expression())
            elif self.at("only"):
                self.advance()
                party = self.ident("a party name after 'only'")
                fn.only.append((party.pos, party.text))
            else:
                break
        if self.at("while") or self.at("loop"):
            self.parse_statement()
        fn.body_pos = self.tok.pos
        fn.body = self.parse_block()
        fn.end = self.toks[self.i - 1].pos + 1
        return fn


def _int_value(text: str) -> int:
    text = text.replace("_", "")
    return int(text, 16) if text.startswith("0x") else int(text)


def _negate_literal(node: IntLit | DecLit) -> Expr:
    if isinstance(node, IntLit):
        return IntLit(node.pos - 1, -node.value)
    return DecLit(node.pos - 1, -node.scaled)


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def parse_contract(
    text: str,
    filename: str = "<source>",
    *,
    max_depth: int = 200,
    max_errors: int = 20,
    timings: dict[str, float] | None = None,
) -> Contract:
    """Lex and parse one contract; raises :class:`CompileError` with every diagnostic found.

    ``timings`` (when given) receives the seconds spent in "lexing" and "parsing".
    """
    t0 = time.perf_counter()
    smap = SourceMap(text, filename)
    diags: list[Diagnostic] = []
    tokens = lex(text, smap, diags, max_errors)
    t1 = time.perf_counter()
    if timings is not None:
        timings["lexing"] = t1 - t0
    parser = Parser(tokens, smap, diags, max_depth=max_depth, max_errors=max_errors)
    contract = None
    note = ""
    if len(diags) < max_errors:
        try:
            contract = parser.parse_contract()
        except _SyntaxError:
            contract = None
        except _Abort:
            contract = None
    if timings is not None:
        timings["parsing"] = time.perf_counter() - t1
    if len(diags) >= max_errors:
        note = f"stopped after {max_errors} errors"
    if diags or contract is None:
        diags.sort(key=lambda d: (d.line, d.col))
        raise CompileError(diags, note)
    return contract


def parse_expression(text: str, *, max_depth: int = 200) -> Expr:
    """Parse one expression (the Pratt parser's entry point); raises :class:`CompileError`."""
    smap = SourceMap(text, "<expr>")
    diags: list[Diagnostic] = []
    tokens = lex(text, smap, diags, 20)
    parser = Parser(tokens, smap, diags, max_depth=max_depth)
    expr: Expr | None = None
    if not diags:
        try:
            expr = parser.parse_expression()
            if parser.tok.kind != "eof":
                parser.error(
                    parser.tok.pos,
                    f"expected end of expression, found {parser.describe(parser.tok)}",
                )
        except (_SyntaxError, _Abort):
            expr = None
    if diags or expr is None:
        raise CompileError(diags)
    return expr
