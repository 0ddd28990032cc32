"""Printing terms as text (parseable back) and LaTeX; iterative, so deep terms print too.

Each node is rendered once into (pieces, precedence), where pieces are strings
and references to child nodes (never copies of the child's text, so a
100,000-deep chain costs linear memory); a final iterative pass splices the
pieces together. A parent wraps a child in parentheses when the child binds
more loosely than the parent's slot needs. Precedences: sum 1, product 2,
negation 3, power 4, atom 5.
"""

from __future__ import annotations

from fractions import Fraction

from tenfold.symbolic_modeler._terms import (
    OP_ADD,
    OP_MUL,
    OP_NUM,
    OP_POW,
    OP_SEQ,
    OP_SEQ0,
    OP_SYM,
    OP_WILD,
    Term,
)

__all__ = ["to_latex", "to_text"]

_SUM, _PROD, _NEG, _POW, _ATOM = 1, 2, 3, 4, 5

_CHUNK_BITS = 12_000  # about 3,600 digits: under Python's 4,300-digit str(int) limit


def int_text(n: int) -> str:
    """Decimal digits of ``n`` of any size (``str`` refuses more than 4,300 digits)."""
    if n.bit_length() <= _CHUNK_BITS:
        return str(n)
    if n < 0:
        return "-" + int_text(-n)
    k = (n.bit_length() * 3) // 20  # about half the digits
    high, low = divmod(n, 10**k)
    return int_text(high) + int_text(low).rjust(k, "0")


Pieces = list[str | Term]


class _Style:
    def number(self, v: int | Fraction) -> tuple[str, int]:
        # "-1/2" is a quotient at the top level: it binds like a product, not a negation
        if isinstance(v, Fraction):
            return f"{int_text(v.numerator)}/{int_text(v.denominator)}", _PROD
        return int_text(v), (_NEG if v < 0 else _ATOM)

    def symbol(self, name: str) -> str:
        return name

    def wild(self, name: str, op: str) -> str:
        return name + {OP_WILD: "_", OP_SEQ: "__", OP_SEQ0: "___"}[op]

    def paren(self, p: Pieces) -> Pieces:
        return ["(", *p, ")"]

    def times(self, parts: list[Pieces]) -> Pieces:
        out: Pieces = []
        for i, part in enumerate(parts):
            if i:
                out.append("*")
            out.extend(part)
        return out

    def frac(self, num: Pieces, num_prec: int, dens: list[tuple[Pieces, int]]) -> Pieces:
        # One '/' per denominator factor: a/b/c reads back as a * b**-1 * c**-1, the
        # very factors printed, where a/(b*c) would read back as (b*c)**-1.
        out = num if num_prec >= _PROD else self.paren(num)
        for d, p in dens:
            out = [*out, "/", *(d if p > _PROD else self.paren(d))]
        return out

    def power(self, base: Pieces, base_prec: int, exp: Pieces, exp_prec: int) -> Pieces:
        b = base if base_prec > _POW else self.paren(base)
        e = exp if exp_prec >= _POW else self.paren(exp)
        return [*b, "**", *e]

    def call(self, name: str, args: list[Pieces]) -> Pieces:
        out: Pieces = [name, "("]
        for i, a in enumerate(args):
            if i:
                out.append(", ")
            out.extend(a)
        out.append(")")
        return out


class _Latex(_Style):
    _GREEK = frozenset(
        {"alpha", "beta", "gamma", "delta", "theta", "lambda", "mu", "pi", "sigma", "omega"}
    )
    _KNOWN = frozenset(
        {"sin", "cos", "tan", "exp", "log", "sinh", "cosh", "tanh", "cot", "sec", "csc"}
    )

    def number(self, v: int | Fraction) -> tuple[str, int]:
        if isinstance(v, Fraction):
            sign = "-" if v < 0 else ""
            text = f"{sign}\\frac{{{int_text(abs(v.numerator))}}}{{{int_text(v.denominator)}}}"
            return text, (_NEG if v < 0 else _ATOM)
        return int_text(v), (_NEG if v < 0 else _ATOM)

    def symbol(self, name: str) -> str:
        if name in self._GREEK:
            return "\\" + name
        if len(name) > 1:
            return f"\\mathrm{{{name}}}"
        return name

    def wild(self, name: str, op: str) -> str:
        mark = {OP_WILD: "", OP_SEQ: "+", OP_SEQ0: "*"}[op]
        return f"{name}_{{{mark}}}"

    def paren(self, p: Pieces) -> Pieces:
        return ["\\left(", *p, "\\right)"]

    def times(self, parts: list[Pieces]) -> Pieces:
        out: Pieces = []
        for i, part in enumerate(parts):
            if i:
                out.append(" \\cdot ")
            out.extend(part)
        return out

    def frac(self, num: Pieces, num_prec: int, dens: list[tuple[Pieces, int]]) -> Pieces:
        den: Pieces = self.times([d if p > _PROD else self.paren(d) for d, p in dens])
        if len(dens) == 1:
            den = dens[0][0]
        return ["\\frac{", *num, "}{", *den, "}"]

    def power(self, base: Pieces, base_prec: int, exp: Pieces, exp_prec: int) -> Pieces:
        b = base if base_prec > _POW else self.paren(base)
        return [*b, "^{", *exp, "}"]

    def call(self, name: str, args: list[Pieces]) -> Pieces:
        head = f"\\{name}" if name in self._KNOWN else f"\\operatorname{{{name}}}"
        inner: Pieces = []
        for i, a in enumerate(args):
            if i:
                inner.append(", ")
            inner.extend(a)
        return [head, *self.paren(inner)]


def _neg_coefficient(t: Term) -> tuple[int | Fraction, tuple[Term, ...]] | None:
    """For a product with a negative numeric coefficient: (|coefficient|, other factors)."""
    if t.op == OP_MUL and t.args[0].op == OP_NUM and t.args[0].value < 0:
        return -t.args[0].value, t.args[1:]
    return None


def _render(term: Term, style: _Style) -> str:
    prec: dict[Term, int] = {}
    pieces: dict[Term, Pieces] = {}

    def ref(t: Term) -> Pieces:
        return [t]

    def product(factors: tuple[Term, ...], coeff: int | Fraction) -> tuple[Pieces, int]:
        """Render coeff * factors, splitting negative powers into a denominator."""
        numer: list[Pieces] = []
        denom: list[tuple[Pieces, int]] = []
        num_prec = _ATOM
        if isinstance(coeff, Fraction):
            if coeff.numerator != 1:
                numer.append([int_text(coeff.numerator)])
            denom.append(([int_text(coeff.denominator)], _ATOM))
        elif coeff != 1:
            numer.append([int_text(coeff)])
        for f in factors:
            # b**-2 prints as /b**2, which reads back as (b**2)**-1 = b**-2; not so for a
            # power base ((x**-1)**-2 stays), which prints as (1/x)**(-2).
            if (
                f.op == OP_POW
                and f.args[1].op == OP_NUM
                and f.args[1].value < 0
                and (f.args[1].value == -1 or f.args[0].op != OP_POW)
            ):
                base, e = f.args
                p = prec[base]
                if e.value == -1:
                    denom.append((ref(base), p))
                else:
                    es, ep = style.number(-e.value)
                    denom.append((style.power(ref(base), p, [es], ep), _POW))
                continue
            p = prec[f]
            numer.append(ref(f) if p > _PROD else style.paren(ref(f)))
            num_prec = min(num_prec, max(p, _PROD))
        num_pieces: Pieces = style.times(numer) if numer else ["1"]
        if len(numer) > 1:
            num_prec = _PROD
        if not denom:
            return num_pieces, (num_prec if len(numer) == 1 else _PROD)
        return style.frac(num_pieces, num_prec, denom), _PROD

    for t in term.walk():
        op = t.op
        if op == OP_NUM:
            text, p = style.number(t.value)
            pieces[t], prec[t] = [text], p
        elif op == OP_SYM:
            pieces[t], prec[t] = [style.symbol(t.value)], _ATOM
        elif op in (OP_WILD, OP_SEQ, OP_SEQ0):
            pieces[t], prec[t] = [style.wild(t.value, op)], _ATOM
        elif op == OP_ADD:
            parts: Pieces = []
            for i, a in enumerate(t.args):
                neg = _neg_coefficient(a)
                if neg is None and a.op == OP_NUM and a.value < 0:
                    parts.append(" - " if i else "-")
                    parts.append(style.number(-a.value)[0])
                elif neg is not None:
                    parts.append(" - " if i else "-")
                    parts.extend(product(neg[1], neg[0])[0])
                else:
                    if i:
                        parts.append(" + ")
                    parts.extend(style.paren(ref(a)) if prec[a] <= _SUM else ref(a))
            pieces[t], prec[t] = parts, _SUM
        elif op == OP_MUL:
            neg = _neg_coefficient(t)
            if neg is not None:
                body, body_prec = product(neg[1], neg[0])
                # "-x" binds like a negation, "-2*x" and "-x/y" like a product
                pieces[t], prec[t] = ["-", *body], (_NEG if body_prec > _PROD else _PROD)
            elif t.args[0].op == OP_NUM:
                pieces[t], prec[t] = product(t.args[1:], t.args[0].value)
            else:
                pieces[t], prec[t] = product(t.args, 1)
        elif op == OP_POW:
            base, e = t.args
            if e.op == OP_NUM and e.value == Fraction(1, 2):
                pieces[t], prec[t] = style.call("sqrt", [ref(base)]), _ATOM
            elif e.op == OP_NUM and e.value == -1 and type(style) is _Style:
                pieces[t] = style.frac(["1"], _ATOM, [(ref(base), prec[base])])
                prec[t] = _PROD
            else:
                pieces[t] = style.power(ref(base), prec[base], ref(e), prec[e])
                prec[t] = _POW
        else:
            pieces[t], prec[t] = style.call(op, [ref(a) for a in t.args]), _ATOM
    out: list[str] = []
    stack: Pieces = [term]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        else:
            stack.extend(reversed(pieces[item]))
    return "".join(out)


_TEXT = _Style()
_LATEX = _Latex()


def to_text(term: Term) -> str:
    """Text that :func:`parse_expression` reads back to an equivalent term."""
    return _render(term, _TEXT)


def to_latex(term: Term) -> str:
    """LaTeX for the term (``\\frac``, ``^{}``, ``\\sin\\left(...\\right)``)."""
    return _render(term, _LATEX)
