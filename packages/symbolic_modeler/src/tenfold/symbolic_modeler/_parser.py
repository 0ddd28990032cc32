"""parse_expression: text to term, by an iterative operator-precedence (shunting-yard) parser.

Grammar (Python-like)::

    expr    := expr ('+' | '-') expr | expr ('*' | '/') expr
             | ('-' | '+') expr | expr ('**' | '^') expr        (right-assoc)
             | NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'

Precedence, loosest first: ``+ -``, ``* /``, unary ``-``, ``**``. So ``-x**2``
is ``-(x**2)`` and ``2**-x`` is ``2**(-x)``, as in Python and SymPy.

No recursion anywhere: 100,000 nested parentheses or a 100,000-term sum parse
in linear time. Chains of ``+`` and ``*`` are collected n-ary while parsing
(merging the shorter chain into the longer), so deep left or right nesting
never copies a list per level.

In pattern mode, names ending in ``_`` are variables (one term), ``__``
sequence variables (one or more arguments) and ``___`` (zero or more).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from tenfold.symbolic_modeler._terms import (
    OP_ADD,
    OP_MUL,
    OP_SEQ,
    OP_SEQ0,
    OP_WILD,
    Term,
    ac,
    fn,
    num,
    pow_,
    sym,
    wild,
)
from tenfold.symbolic_modeler.errors import ParseError

__all__ = ["parse_expression", "parse_pattern"]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/^(),]))"
)
_SPACE = re.compile(r"\s*")

# binary operator -> (precedence, right associative)
_BINARY = {"+": (1, False), "-": (1, False), "*": (2, False), "/": (2, False), "**": (4, True)}
_NEG_PREC = 3


@dataclass
class _Chain:
    """An open n-ary ``+`` or ``*`` being collected; items are finished terms."""

    op: str
    items: list[Term] = field(default_factory=list)


_Operand = Term | _Chain


def _close(x: _Operand) -> Term:
    if isinstance(x, Term):
        return x
    return ac(x.op, x.items)


def _chain(op: str, left: _Operand, right: _Operand) -> _Chain:
    """Join two operands under AC ``op``; order is irrelevant, so the shorter list is appended."""
    lc = left if isinstance(left, _Chain) and left.op == op else _Chain(op, [_close(left)])
    if isinstance(right, _Chain) and right.op == op:
        if len(right.items) > len(lc.items):
            right.items.extend(lc.items)
            return right
        lc.items.extend(right.items)
    else:
        lc.items.append(_close(right))
    return lc


def _apply(op: str, left: _Operand, right: _Operand) -> _Operand:
    if op == "+":
        return _chain(OP_ADD, left, right)
    if op == "-":
        return _chain(OP_ADD, left, ac(OP_MUL, (num(-1), _close(right))))
    if op == "*":
        return _chain(OP_MUL, left, right)
    if op == "/":
        return _chain(OP_MUL, left, pow_(_close(right), num(-1)))
    return pow_(_close(left), _close(right))


def _negate(x: _Operand) -> _Operand:
    if isinstance(x, Term) and x.op == "#":
        return num(-x.value)
    return _chain(OP_MUL, num(-1), x)


_MAX_EXPONENT = 100_000  # 1e100000 is a 332,000-bit integer; 1e999999999 would not fit


def _digits(d: str) -> int:
    """``int(d)`` for a digit string of any length (``int`` refuses more than 4,300 digits)."""
    if len(d) <= 4000:
        return int(d)
    half = len(d) // 2
    high: int = _digits(d[:half]) * 10 ** (len(d) - half)
    return high + _digits(d[half:])


def _number(tok: str, text: str, pos: int) -> Fraction:
    mantissa, _, exp_text = tok.lower().partition("e")
    whole, _, frac = mantissa.partition(".")
    exponent = int(exp_text) if exp_text else 0
    if abs(exponent) > _MAX_EXPONENT:
        raise ParseError(f"bad number {tok[:40]!r}: exponent beyond +-{_MAX_EXPONENT}", text, pos)
    value = Fraction(_digits(whole + frac or "0"), 10 ** len(frac))
    scale = Fraction(10) ** exponent
    return value * scale


def _call(name: str, args: list[Term], text: str, pos: int) -> Term:
    if name == "sqrt":
        if len(args) != 1:
            raise ParseError(f"sqrt takes 1 argument, got {len(args)}", text, pos)
        return pow_(args[0], num(Fraction(1, 2)))
    return fn(name, *args)


def _leaf_name(name: str, patterns: bool) -> Term:
    if patterns and name.endswith("_") and name.strip("_"):
        if name.endswith("___"):
            return wild(name[:-3], OP_SEQ0)
        if name.endswith("__"):
            return wild(name[:-2], OP_SEQ)
        return wild(name[:-1], OP_WILD)
    return sym(name)


def _describe(tok: str) -> str:
    return "end of input" if tok == "" else repr(tok)


def _parse(text: str, patterns: bool) -> Term:
    # Operator stack entries: ("bin", op, prec, right, pos) | ("neg", pos)
    # | ("(", pos) | ("call", name, pos, args-list).
    ops: list[tuple[object, ...]] = []
    out: list[_Operand] = []
    expect_operand = True
    pos = 0
    n = len(text)

    def reduce_top() -> None:
        entry = ops.pop()
        if entry[0] == "neg":
            out.append(_negate(out.pop()))
        else:
            right = out.pop()
            left = out.pop()
            out.append(_apply(str(entry[1]), left, right))

    while True:
        m = _TOKEN.match(text, pos)
        if m is None or (m.end() == m.start() and pos < n):
            start = _SPACE.match(text, pos)
            at = start.end() if start else pos
            if at >= n:
                tok, tok_pos = "", n
            else:
                raise ParseError(f"unexpected character {text[at]!r}", text, at)
        else:
            tok_pos = m.start(m.lastindex or 0)
            tok = m.group(m.lastindex or 0)
            pos = m.end()
        kind = m.lastgroup if m is not None and tok else None
        if expect_operand:
            if kind == "num":
                out.append(num(_number(tok, text, tok_pos)))
                expect_operand = False
            elif kind == "name":
                after = _SPACE.match(text, pos)
                nxt = after.end() if after else pos
                if nxt < n and text[nxt] == "(":
                    ops.append(("call", tok, tok_pos, []))
                    pos = nxt + 1
                    after = _SPACE.match(text, pos)
                    if after and after.end() < n and text[after.end()] == ")":
                        raise ParseError(
                            f"expected an argument for {tok}(), found ')'", text, after.end()
                        )
                else:
                    out.append(_leaf_name(tok, patterns))
                    expect_operand = False
            elif tok == "(":
                ops.append(("(", tok_pos))
            elif tok == "-":
                ops.append(("neg", tok_pos))
            elif tok == "+":
                pass
            else:
                raise ParseError(
                    f"expected a number, a name, '(' or '-', found {_describe(tok)}",
                    text,
                    tok_pos,
                )
            continue
        # expecting an operator, ')' , ',' or the end
        if tok in _BINARY or tok == "^":
            op = "**" if tok == "^" else tok
            prec, right_assoc = _BINARY[op]
            while ops:
                top = ops[-1]
                if top[0] == "neg":
                    top_prec = _NEG_PREC
                elif top[0] == "bin":
                    top_prec = int(str(top[2]))
                else:
                    break
                if top_prec > prec or (top_prec == prec and not right_assoc):
                    reduce_top()
                else:
                    break
            ops.append(("bin", op, prec, right_assoc, tok_pos))
            expect_operand = True
        elif tok in (")", ","):
            while ops and ops[-1][0] in ("bin", "neg"):
                reduce_top()
            if not ops:
                raise ParseError(
                    f"unmatched {tok!r}: expected an operator or the end of input", text, tok_pos
                )
            top = ops[-1]
            if tok == ",":
                if top[0] != "call":
                    raise ParseError("',' outside a function call", text, tok_pos)
                args = top[3]
                assert isinstance(args, list)
                args.append(_close(out.pop()))
                expect_operand = True
            elif top[0] == "(":
                ops.pop()
            else:
                ops.pop()
                name, call_pos, args = top[1], top[2], top[3]
                assert isinstance(args, list) and isinstance(call_pos, int)
                args.append(_close(out.pop()))
                out.append(_call(str(name), args, text, call_pos))
        elif tok == "":
            while ops and ops[-1][0] in ("bin", "neg"):
                reduce_top()
            if ops:
                top = ops[-1]
                opened = top[2] if top[0] == "call" else top[1]
                assert isinstance(opened, int)
                raise ParseError(
                    f"expected ')' to close the '(' at col {opened + 1}, found end of input",
                    text,
                    n,
                )
            if len(out) != 1:  # pragma: no cover - guarded by the expect_operand state
                raise ParseError("expected one expression", text, n)
            return _close(out[0])
        else:
            raise ParseError(
                f"expected an operator, ')' or the end of input, found {_describe(tok)}",
                text,
                tok_pos,
            )


def parse_expression(text: str) -> Term:
    """Parse expression text into a raw term (flattened and sorted, not reduced).

    Raises :class:`ParseError` naming the column and what was expected.
    """
    if not isinstance(text, str):
        raise TypeError("expression text must be a str")
    return _parse(text, patterns=False)


def parse_pattern(text: str) -> Term:
    """Parse a pattern: like :func:`parse_expression`, with ``x_``, ``x__``, ``x___`` variables."""
    return _parse(text, patterns=True)
