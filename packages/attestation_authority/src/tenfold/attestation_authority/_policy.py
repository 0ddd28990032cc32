"""The reference-value policy language: which PCRs a quote must cover and what they may hold.

One rule a line; ``#`` starts a comment::

    # web fleet, firmware 2.1 or 2.2
    sha256:0 = 3d4581...          # exactly this value
    sha256:7 = aa01... | bb02...  # one of these values
    sha256:1-6 = *                # must be quoted, any value
    sha256:14 = replay            # must equal the replay of the event log
    sha256:10 = ima               # must equal the replay of the IMA list, every file allowed

Grammar (whitespace between tokens is free)::

    rule    := bank ":" indices "=" values
    bank    := "sha1" | "sha256" | "sha384" | "sha512"
    indices := span ("," span)*      span := N | N "-" N     (0 <= N < 24)
    values  := "*" | "replay" | "ima" | hex ("|" hex)*   (hex: the bank's digest size)

The set of PCRs named is the selection the verifier asks for and the quote must
match exactly. A PCR named twice is an error, so a policy reads one way only.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from string import hexdigits

from tenfold.attestation_authority._structs import (
    BANK_IDS,
    BANK_NAMES,
    DIGEST_SIZES,
    PCR_COUNT,
    PcrSelection,
)
from tenfold.attestation_authority.errors import PolicySyntaxError


class Expect(enum.Enum):
    """A rule that is not a list of values."""

    ANY = "*"
    REPLAY = "replay"
    IMA = "ima"


Rule = frozenset[bytes] | Expect


@dataclass(frozen=True)
class Policy:
    """Reference values: (bank, pcr index) -> allowed digests, ``*`` or ``replay``."""

    rules: Mapping[tuple[int, int], Rule]

    @functools.cached_property
    def selection(self) -> tuple[PcrSelection, ...]:
        """The PCR selection a quote must cover, banks in algorithm-id order, indices ascending."""
        banks: dict[int, list[int]] = {}
        for bank, index in sorted(self.rules):
            banks.setdefault(bank, []).append(index)
        return tuple(PcrSelection(bank, tuple(idx)) for bank, idx in banks.items())

    @property
    def needs_event_log(self) -> bool:
        return any(rule is Expect.REPLAY for rule in self.rules.values())

    def render(self) -> str:
        """Canonical text: one rule a PCR, ordered by bank and index; ``parse_policy`` reads it back."""
        lines = []
        for (bank, index), rule in sorted(self.rules.items()):
            if isinstance(rule, Expect):
                value = rule.value
            else:
                value = " | ".join(sorted(v.hex() for v in rule))
            lines.append(f"{BANK_NAMES[bank]}:{index} = {value}")
        return "\n".join(lines) + ("\n" if lines else "")


_TOKEN = re.compile(
    r"\s*(?:(?P<word>[A-Za-z][A-Za-z0-9]*)|(?P<hex>[0-9A-Fa-f]+)|(?P<punct>[:=,|*-]))"
)


def _fail(line_no: int, col: int, text: str) -> PolicySyntaxError:
    return PolicySyntaxError(f"policy:{line_no}:{col}: {text}")


def _tokens(line: str, line_no: int) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    end = len(line.rstrip())
    while pos < end:
        m = _TOKEN.match(line, pos)
        if m is None or m.end() == pos:
            col = pos + len(line[pos:]) - len(line[pos:].lstrip()) + 1
            raise _fail(line_no, col, f"unexpected character {line[col - 1]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


class _Cursor:
    """The tokens of one policy line and a read position; errors carry line and column."""

    def __init__(self, line: str, line_no: int) -> None:
        self.line = line
        self.line_no = line_no
        self.toks = _tokens(line, line_no)
        self.pos = 0

    def peek(self) -> str | None:
        return self.toks[self.pos][1] if self.pos < len(self.toks) else None

    def skip(self, symbol: str) -> bool:
        """Consume ``symbol`` (case-insensitive) if it is next."""
        value = self.peek()
        if value is not None and value.lower() == symbol:
            self.pos += 1
            return True
        return False

    def take(self, kind: str, what: str) -> tuple[str, int]:
        if self.pos >= len(self.toks):
            end = len(self.line.rstrip()) + 1
            raise _fail(self.line_no, end, f"expected {what}, found end of line")
        k, value, col = self.toks[self.pos]
        # A number such as "7" lexes as hex; a digest made only of letters a-f as a word.
        if kind == "num" and k == "hex" and value.isdigit():
            k = "num"
        if kind == "hex" and k == "word" and all(c in hexdigits for c in value):
            k = "hex"
        if k != kind:
            raise _fail(self.line_no, col, f"expected {what}, found {value!r}")
        self.pos += 1
        return value, col

    def expect(self, symbol: str) -> None:
        value, col = self.take("punct", repr(symbol))
        if value != symbol:
            raise _fail(self.line_no, col, f"expected {symbol!r}, found {value!r}")


def _parse_rule(cur: _Cursor) -> tuple[int, str, list[tuple[int, int]], Rule]:
    bank_name, col = cur.take("word", "a bank (sha1, sha256, sha384, sha512)")
    bank = BANK_IDS.get(bank_name.lower())
    if bank is None:
        raise _fail(cur.line_no, col, f"unknown bank {bank_name!r}")
    cur.expect(":")
    indices: list[tuple[int, int]] = []
    while True:
        first, col = cur.take("num", "a PCR index")
        lo = hi = _index(first, cur.line_no, col)
        if cur.skip("-"):
            last, col2 = cur.take("num", "a PCR index")
            hi = _index(last, cur.line_no, col2)
            if hi < lo:
                raise _fail(cur.line_no, col, f"empty PCR range {lo}-{hi}")
        indices.extend((i, col) for i in range(lo, hi + 1))
        if not cur.skip(","):
            break
    cur.expect("=")
    rule: Rule
    if cur.skip("*"):
        rule = Expect.ANY
    elif cur.skip("replay"):
        rule = Expect.REPLAY
    elif cur.skip("ima"):
        rule = Expect.IMA
    else:
        values = set()
        while True:
            digest, col = cur.take("hex", "a hex digest, '*', 'replay' or 'ima'")
            if len(digest) != 2 * DIGEST_SIZES[bank]:
                raise _fail(
                    cur.line_no,
                    col,
                    f"{bank_name} digest must be {2 * DIGEST_SIZES[bank]} hex digits,"
                    f" got {len(digest)}",
                )
            values.add(bytes.fromhex(digest))
            if not cur.skip("|"):
                break
        rule = frozenset(values)
    if cur.pos != len(cur.toks):
        _, value, col = cur.toks[cur.pos]
        raise _fail(cur.line_no, col, f"unexpected {value!r} after the rule")
    return bank, bank_name, indices, rule


def parse_policy(text: str) -> Policy:
    """Parse policy text; raises :class:`PolicySyntaxError` naming ``policy:line:col``."""
    rules: dict[tuple[int, int], Rule] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        if not line.strip():
            continue
        bank, bank_name, indices, rule = _parse_rule(_Cursor(line, line_no))
        for index, col in indices:
            if (bank, index) in rules:
                raise _fail(line_no, col, f"{bank_name}:{index} is already named")
            rules[(bank, index)] = rule
    return Policy(rules)


def _index(text: str, line_no: int, col: int) -> int:
    index = int(text)
    if not 0 <= index < PCR_COUNT:
        raise _fail(line_no, col, f"PCR index {index} out of range 0-{PCR_COUNT - 1}")
    return index
