"""Exceptions raised by tenfold.contract_compiler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tenfold.core.errors import CheckFailed, TenfoldError

__all__ = [
    "CompileError",
    "ContractCompilerError",
    "ContractRevert",
    "Diagnostic",
    "LimitExceeded",
    "VerificationFailed",
]


@dataclass(frozen=True)
class Diagnostic:
    """One message about the source: where (file:line:col), what, and the line with a caret."""

    filename: str
    line: int
    col: int
    message: str
    severity: str = "error"
    source_line: str = ""
    caret_col: int = 0  # column of the caret within source_line (it may be clipped)

    def __str__(self) -> str:
        head = f"{self.filename}:{self.line}:{self.col}: {self.severity}: {self.message}"
        if not self.source_line:
            return head
        caret = " " * ((self.caret_col or self.col) - 1) + "^"
        return f"{head}\n    {self.source_line}\n    {caret}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.filename,
            "line": self.line,
            "col": self.col,
            "severity": self.severity,
            "message": self.message,
        }


class ContractCompilerError(TenfoldError):
    """Root of every error raised by the Contract Executable Compiler."""


class CompileError(ContractCompilerError):
    """Raised when the source has lexical, syntax, type or limit errors; carries every diagnostic."""

    def __init__(self, diagnostics: Sequence[Diagnostic], note: str = "") -> None:
        self.diagnostics = list(diagnostics)
        text = "\n".join(str(d) for d in self.diagnostics)
        if note:
            text = f"{text}\n{note}" if text else note
        super().__init__(text)


class LimitExceeded(ContractCompilerError):
    """Raised when an input or an output passes a configured size limit."""


class VerificationFailed(ContractCompilerError, CheckFailed):
    """Raised when an ``ensures``, ``invariant`` or ``assert`` is disproved (with a counterexample)."""


class ContractRevert(ContractCompilerError):
    """Raised by a contract call whose runtime check failed (revert with the guard's id and reason)."""

    def __init__(self, guard: int, kind: str, message: str) -> None:
        self.guard = guard
        self.kind = kind
        what = "check" if kind == "check" else f"{kind} check"  # never "check check"
        super().__init__(f"call reverted: {what} #{guard} failed: {message}")
