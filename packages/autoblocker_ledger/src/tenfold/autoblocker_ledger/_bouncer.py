"""An nftables bouncer, and the ledger's decisions as the one stream every bouncer reads.

:class:`NftBouncer` implements :class:`tenfold.core.events.Bouncer`: it takes
the stream decisions of ``tenfold.core.events`` one at a time, or several at
once (``apply_many``, which :func:`tenfold.core.events.follow` uses for what one
read of the stream brings: their set additions go in as one ``nft`` transaction),
and, for the embedded loop of ``autoblock run --nft``, batches from
:class:`DecisionStream`.
:func:`stream_decisions` turns the ledger's entries into that stream, each
decision carrying the index of the entry that records it.

It owns one named table (``inet <table>``) holding two interval sets, one per
address family, and an input-hook chain that drops packets from them. It never
touches any other table, and :meth:`NftBouncer.close` deletes its table, so a
run leaves nothing behind. Loopback is never blocked (it would cut the node off
from its own etcd and services). Needs root.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tenfold.autoblocker_ledger._autoblock import Decision, DecisionStream, StreamBatch
from tenfold.autoblocker_ledger.errors import BouncerError
from tenfold.core.events import BanTable
from tenfold.core.events import Decision as StreamDecision


def stream_decision(decision: Decision, index: int) -> StreamDecision | None:
    """The stream form of a ledger decision recorded at ``index``; None for a non-address scope."""
    if decision.scope == "subject":
        return None  # a user name or a key: nothing a packet filter can enforce
    return StreamDecision(
        action=decision.action,
        scope=decision.scope,
        value=decision.value,
        until=(decision.until_ms if decision.action == "ban" else decision.time_ms) / 1000,
        reason=f"{decision.rule}: {decision.reason}" if decision.rule else decision.reason,
        index=index,
    )


def stream_decisions(ledger: Any, after: int = -1) -> Iterator[StreamDecision]:
    """Every address decision recorded after entry ``after``, in ledger order.

    A follower passes the last index it applied and so neither misses nor repeats
    one; from ``-1`` this is the whole history, whose lapsed bans a bouncer skips.
    """
    for index in range(max(after + 1, 0), ledger.size):
        d = Decision.from_event(ledger.get(index).event)
        if d is not None and (sd := stream_decision(d, index)) is not None:
            yield sd


_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,30}$")


def set_elements(listing: dict[str, Any]) -> list[str]:
    """Every element of every set in an ``nft -j list`` document, canonical and sorted.

    Addresses and prefixes as ``ipaddress`` writes them; an element with options
    (a timeout) by its value; an interval as the prefixes that cover it.
    Duplicates are kept, so a caller can tell an element held twice.
    """
    out: list[str] = []
    for item in listing.get("nftables", []):
        for listed in (item.get("set") or {}).get("elem", []):
            el = listed
            if isinstance(el, dict) and "elem" in el:  # an element with options
                el = el["elem"]["val"]
            if isinstance(el, str):
                out.append(str(ipaddress.ip_address(el)))
            elif isinstance(el, dict) and "prefix" in el:
                p = el["prefix"]
                out.append(str(ipaddress.ip_network(f"{p['addr']}/{p['len']}")))
            elif isinstance(el, dict) and "range" in el:
                lo, hi = el["range"]
                nets = ipaddress.summarize_address_range(
                    ipaddress.ip_address(lo), ipaddress.ip_address(hi)
                )
                out += [str(n) for n in nets]
    return sorted(out)


class NftBouncer:
    """Keeps an nftables table in step with a decision stream."""

    def __init__(
        self,
        table: str | None = None,
        *,
        netns: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table or f"tenfold_ledger_{os.getpid()}"
        if not _TABLE.match(self.table):
            raise BouncerError(f"bad nftables table name {self.table!r}")
        nft = shutil.which("nft") or "/usr/sbin/nft"
        # In a named network namespace, nft runs there (``ip netns exec``).
        self._argv = ["ip", "netns", "exec", netns, nft] if netns else [nft]
        self.position = 0
        self.bans = BanTable()
        self._clock = clock
        self._created = False
        self._sets: set[str] = set()

    def _run(self, script: str) -> str:
        try:
            proc = subprocess.run(
                [*self._argv, "-f", "-"],
                input=script,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except FileNotFoundError:
            raise BouncerError("nft is not installed (Debian package nftables)") from None
        if proc.returncode != 0:
            raise BouncerError(f"nft refused: {proc.stderr.strip().splitlines()[-1:]}")
        return proc.stdout

    def open(self) -> NftBouncer:
        if os.geteuid() != 0:
            raise BouncerError("the nftables bouncer needs root")
        t = self.table
        self._run(
            f"add table inet {t}\n"
            f"add set inet {t} ban4 {{ type ipv4_addr; flags interval; }}\n"
            f"add set inet {t} ban6 {{ type ipv6_addr; flags interval; }}\n"
            f"add chain inet {t} input {{ type filter hook input priority -10; policy accept; }}\n"
            f"add rule inet {t} input ip saddr @ban4 drop\n"
            f"add rule inet {t} input ip6 saddr @ban6 drop\n"
        )
        self._created = True
        return self

    def close(self) -> None:
        if self._created:
            self._run(f"delete table inet {self.table}\n")
            self._created = False
            self._sets.clear()

    def __enter__(self) -> NftBouncer:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _place(self, value: str) -> tuple[str, str] | None:
        """The set an address or prefix goes in, and its element text; None for loopback.

        Hosts share one set per family; prefixes get one set per family and length
        (``net4_24``), made on first use. nftables refuses overlapping elements in an
        interval set, and a host inside a banned /24, or a /24 inside a banned /16, is
        what escalation produces: within one set of one length no two can overlap.
        """
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return None
        if net.is_loopback:
            return None
        v = net.version
        if net.prefixlen == net.max_prefixlen:
            return f"ban{v}", str(net.network_address)
        name = f"net{v}_{net.prefixlen}"
        if name not in self._sets:
            t, kind, match = self.table, f"ipv{v}_addr", "ip" if v == 4 else "ip6"
            self._run(
                f"add set inet {t} {name} {{ type {kind}; flags interval; }}\n"
                f"add rule inet {t} input {match} saddr @{name} drop\n"
            )
            self._sets.add(name)
        return name, str(net)

    def _element(self, d: Decision) -> tuple[str, str] | None:
        if d.scope == "subject":
            return None  # not an address: nothing for a packet filter to do
        return self._place(d.value)

    def apply(self, decision: StreamDecision) -> None:
        """One decision of the stream: add a ban, remove an unban (the Bouncer protocol)."""
        change = self.bans.apply(decision, self._clock())
        el = self._place(decision.value)
        if el is None:
            return
        if change == "add":
            self._run(f"add element inet {self.table} {el[0]} {{ {el[1]} }}\n")
        elif change == "remove":
            self._remove(el)

    def apply_many(self, decisions: Sequence[StreamDecision]) -> None:
        """Several decisions of the stream, in order, with one ``nft`` for their additions.

        The sets' new elements go in as one transaction (one process, not one per
        decision); an unban flushes the additions before it, so order is kept.
        """
        now = self._clock()
        pending: list[tuple[str, str]] = []
        for d in decisions:
            change = self.bans.apply(d, now)
            el = self._place(d.value)
            if el is None:
                continue
            if change == "add":
                pending.append(el)
            elif change == "remove":
                self._add_all(pending)
                self._remove(el)
        self._add_all(pending)

    def _add_all(self, elements: list[tuple[str, str]]) -> None:
        by_set: dict[str, list[str]] = {}
        for name, el in elements:
            by_set.setdefault(name, []).append(el)
        if by_set:
            self._run(
                "".join(
                    f"add element inet {self.table} {name} {{ {', '.join(els)} }}\n"
                    for name, els in by_set.items()
                )
            )
        elements.clear()

    def _remove(self, el: tuple[str, str]) -> None:
        with contextlib.suppress(BouncerError):  # an element already gone is fine
            self._run(f"delete element inet {self.table} {el[0]} {{ {el[1]} }}\n")

    def expire(self, now: float) -> list[str]:
        """Remove every ban whose ``until`` has passed; returns the values removed."""
        gone = self.bans.expire(now)
        for value in gone:
            el = self._place(value)
            if el is not None:
                self._remove(el)
        return gone

    def apply_batch(self, batch: StreamBatch) -> int:
        """Add the batch's bans and remove its unbans; returns the number of set changes."""
        lines = []
        for d in batch.deleted:
            el = self._element(d)
            if el:
                lines.append(f"delete element inet {self.table} {el[0]} {{ {el[1]} }}")
        for line in lines:
            with contextlib.suppress(BouncerError):  # deleting one already gone is fine
                self._run(line + "\n")
        adds = [el for d in batch.new if (el := self._element(d))]
        self._add_all(list(adds))  # one transaction for the additions
        self.position = batch.position
        return len(lines) + len(adds)

    def sync(self, stream: DecisionStream, now_ms: int) -> int:
        """Startup snapshot the first time, then the changes since the last position."""
        batch = stream.snapshot(now_ms) if self.position == 0 else stream.changes(self.position)
        return self.apply_batch(batch)

    def blocked(self) -> list[str]:
        """Addresses and ranges currently in the table's sets."""
        proc = subprocess.run(
            [*self._argv, "-j", "list", "table", "inet", self.table],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise BouncerError(f"nft list failed: {proc.stderr.strip()}")
        return set_elements(json.loads(proc.stdout))
