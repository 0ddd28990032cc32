"""Exceptions raised by tenfold.contract_compiler."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class ContractCompilerError(TenfoldError):
    """Root of every error raised by the Contract Executable Compiler."""
