"""The ``[autoblocker_ledger]`` section of ``tenfold.toml`` (all keys optional)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.core.config import Section, load_section


class LedgerConfig(Section):
    """Tuning knobs; environment overrides are ``TENFOLD_AUTOBLOCKER_LEDGER__<KEY>``."""

    store: str = ".tenfold/ledger"
    segment_bytes: int = Field(default=64 << 20, ge=4096)
    fsync: bool = True
    pipeline_depth: int = Field(default=4, ge=1, le=16)
    max_block_bytes: int = Field(default=1_000_000, ge=4096, le=1_400_000)
    etcd_timeout_s: float = Field(default=5.0, gt=0)
    # Sharded ledgers: one list of etcd endpoints ("host:port") per shard, in shard order.
    shard_endpoints: list[list[str]] = Field(default_factory=list, max_length=1024)
    shard_name: str = "default"
    shard_route_by: Literal["subject", "domain"] = "subject"


def load_config() -> LedgerConfig:
    return load_section("autoblocker_ledger", LedgerConfig)
