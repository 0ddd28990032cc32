"""Registration of the platform with the tenfold core (CLI)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="platform",
    title="tenfold platform",
    summary="detections flow to enforcement: Kafka -> pipeline -> ledger -> XDP/nft bouncer",
    commands={
        "platform": (
            "tenfold.platform.cli:platform",
            "one pipeline from signal to block: up, replay, status, down",
        ),
    },
    scenarios="tenfold.platform.bench:scenarios",
)
