"""Seeded generation of benchmark contracts, in our language and as equivalent Vyper.

Each generated function comes from one of four shapes (a payment with a fee,
a bounded accumulation loop, a tier ladder of branches, a guarded withdrawal)
with seeded constants. The Vyper twin of a function has the same guards
(``assert``), arithmetic, branches and storage writes, so the two compilers
do the same work per function; sizes are counted in non-blank lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["GeneratedPair", "count_loc", "generate_contract"]


@dataclass(frozen=True)
class GeneratedPair:
    ours: str
    vyper: str
    functions: int

    @property
    def ours_loc(self) -> int:
        return count_loc(self.ours)

    @property
    def vyper_loc(self) -> int:
        return count_loc(self.vyper)


def count_loc(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


_OURS_HEAD = """contract Generated{seed} {{
  party owner;
  state total: Money[USD] = 0;
  state paid: Money[USD] = 0;
  state level: u32 = 0;
  state counts: map[16] of u64;
  state slots: map[16] of u64;
  invariant total >= 0;
  invariant paid >= 0;
  fn claim() {{
    check owner == 0, "already owned";
    owner = caller;
  }}
"""

_VYPER_HEAD = """# pragma version ^0.4.0
owner: public(address)
total: public(int128)
paid: public(int128)
level: public(uint32)
counts: HashMap[uint256, uint64]
slots: HashMap[uint256, uint64]

@external
def claim():
    assert self.owner == empty(address), "already owned"
    self.owner = msg.sender
"""


def _payment(k: int, r: random.Random) -> tuple[str, str]:
    cap = r.choice([10**6, 5 * 10**6, 10**7])
    div = r.choice([50, 100, 200, 400])
    thr = r.randint(10, 90)
    bucket = r.choice([8, 16])
    ours = f"""  fn pay_{k}(amount: Money[USD], n: u32) -> Money[USD]
    requires amount > 0 && amount <= {cap}
    requires n < 1000
    ensures result <= amount
  {{
    check total <= 1000000000000, "cap reached";
    let fee = amount / {div};
    if fee > {thr} {{
      total = total + amount - fee;
    }} else {{
      total = total + amount;
    }}
    let slot = n % {bucket};
    check counts[slot] < 1000000, "bucket full";
    counts[slot] = counts[slot] + 1;
    return fee;
  }}
"""
    vyper = f"""
@external
def pay_{k}(amount: int128, n: uint32) -> int128:
    assert amount > 0 and amount <= {cap}
    assert n < 1000
    assert self.total <= 1000000000000, "cap reached"
    fee: int128 = amount // {div}
    if fee > {thr}:
        self.total = self.total + amount - fee
    else:
        self.total = self.total + amount
    slot: uint256 = convert(n % {bucket}, uint256)
    assert self.counts[slot] < 1000000, "bucket full"
    self.counts[slot] = self.counts[slot] + 1
    return fee
"""
    return ours, vyper


def _batch(k: int, r: random.Random) -> tuple[str, str]:
    rounds = r.choice([4, 6, 8])
    mul = r.randint(2, 9)
    add = r.randint(1, 99)
    ours = f"""  fn batch_{k}(base: u32) -> u64
    requires base < 100000
  {{
    let acc: u64 = 0;
    for j in 0..{rounds} {{
      acc = acc + (base as u64) * {mul} + {add};
    }}
    check acc < 100000000, "batch too large";
    slots[base % 16] = acc;
    return acc;
  }}
"""
    vyper = f"""
@external
def batch_{k}(base: uint32) -> uint64:
    assert base < 100000
    acc: uint64 = 0
    for j: uint256 in range({rounds}):
        acc = acc + convert(base, uint64) * {mul} + {add}
    assert acc < 100000000, "batch too large"
    self.slots[convert(base % 16, uint256)] = acc
    return acc
"""
    return ours, vyper


def _tier(k: int, r: random.Random) -> tuple[str, str]:
    a, b, c = sorted(r.sample(range(100, 1000), 3), reverse=True)
    ours = f"""  fn tier_{k}(score: u32) -> u32
    requires score <= 1000
    ensures result <= 50
  {{
    let t: u32 = 1;
    if score > {a} {{
      t = 4;
    }} else if score > {b} {{
      t = 3;
    }} else if score > {c} {{
      t = 2;
    }}
    level = t;
    return t * 10 + score / 100;
  }}
"""
    vyper = f"""
@external
def tier_{k}(score: uint32) -> uint32:
    assert score <= 1000
    t: uint32 = 1
    if score > {a}:
        t = 4
    elif score > {b}:
        t = 3
    elif score > {c}:
        t = 2
    self.level = t
    return t * 10 + score // 100
"""
    return ours, vyper


def _withdraw(k: int, r: random.Random) -> tuple[str, str]:
    limit = r.choice([10**5, 10**6, 10**7])
    ours = f"""  fn withdraw_{k}(amount: Money[USD]) -> Money[USD]
    only owner
    requires amount > 0 && amount <= {limit}
    ensures result == amount
    ensures total == old(total) - amount
  {{
    check amount <= total, "insufficient funds";
    check paid <= 1000000000000000, "payout cap";
    total = total - amount;
    paid = paid + amount;
    return amount;
  }}
"""
    vyper = f"""
@external
def withdraw_{k}(amount: int128) -> int128:
    assert msg.sender == self.owner
    assert amount > 0 and amount <= {limit}
    assert amount <= self.total, "insufficient funds"
    assert self.paid <= 1000000000000000, "payout cap"
    before: int128 = self.total
    self.total = self.total - amount
    self.paid = self.paid + amount
    assert self.total == before - amount
    return amount
"""
    return ours, vyper


_SHAPES = (_payment, _batch, _tier, _withdraw)


def generate_contract(loc: int, seed: int = 0) -> GeneratedPair:
    """A contract of about ``loc`` non-blank lines (ours), with its Vyper twin."""
    r = random.Random(seed)
    ours = [_OURS_HEAD.format(seed=seed)]
    vyper = [_VYPER_HEAD]
    lines = count_loc(ours[0]) + 1
    k = 0
    while True:
        shape = _SHAPES[k % len(_SHAPES)] if k < len(_SHAPES) else r.choice(_SHAPES)
        o, v = shape(k, r)
        n = count_loc(o)
        if lines + n > loc and k > 0:
            break
        ours.append(o)
        vyper.append(v)
        lines += n
        k += 1
    # Top up to the exact size with one-line readers (three lines each in Vyper).
    while lines < loc:
        ours.append(f"  fn read_{k}() -> u32 {{ return level; }}\n")
        vyper.append(f"\n@external\ndef read_{k}() -> uint32:\n    return self.level\n")
        lines += 1
        k += 1
    ours.append("}\n")
    return GeneratedPair("".join(ours), "".join(vyper), k + 1)
