"""A software TPM (swtpm) on two adjacent ports of 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from tenfold.core.errors import ServiceError
from tenfold.core.services._process import (
    OneProcessService,
    _adjacent_free_ports,
    _port_open,
    _Process,
    _tail,
    _which,
)


class Swtpm(OneProcessService):
    """A software TPM 2.0 (swtpm) on a loopback socket; not a hardware TPM.

    ``tcti`` is the string tpm2-pytss and tpm2-tools take (``swtpm:host=...,port=...``).
    The TPM is started up (TPM2_Startup(CLEAR)) by swtpm itself.
    """

    kind = "swtpm"

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.port = 0
        self.ctrl_port = 0

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> None:
        binary = _which("swtpm")
        state = self.workdir / "state"
        state.mkdir(exist_ok=True)
        # Another process may take a probed port before swtpm binds it: try a few pairs.
        last: ServiceError | None = None
        for _ in range(5):
            self.port, self.ctrl_port = _adjacent_free_ports()
            try:
                self._launch(binary, state)
                return
            except ServiceError as exc:
                last = exc
        assert last is not None
        raise last

    def _launch(self, binary: str, state: Path) -> None:
        internal = self.workdir / "swtpm-internal.log"
        argv = [
            binary,
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={state}",
            "--server",
            f"type=tcp,port={self.port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={self.ctrl_port},bindaddr=127.0.0.1",
            "--flags",
            "not-need-init,startup-clear",
            "--log",
            f"file={internal},level=1",
        ]
        self._proc = _Process("swtpm", argv, self.workdir / "swtpm.log")
        self._proc.start()
        try:
            self._proc.wait_ready(
                lambda: _port_open(self.port) and _port_open(self.ctrl_port),
                20,
                f"swtpm on port {self.port}",
            )
        except ServiceError as exc:
            raise ServiceError(f"{exc} {_tail(internal, 4)}") from None
