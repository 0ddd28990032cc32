"""The root of every tenfold exception, and the core's own errors.

Every system's ``errors.py`` subclasses :class:`TenfoldError`. The CLI prints an
error's message as one line and exits with its ``exit_code``: 2 for bad usage or
bad input, 1 for a check that ran and failed.
"""

from __future__ import annotations


class TenfoldError(Exception):
    """Root of every error raised by tenfold; bad input or usage by default (exit 2)."""

    exit_code: int = 2


class CheckFailed(TenfoldError):
    """A check ran and found a problem (a regression, a failed verification): exit 1."""

    exit_code = 1


class ConfigError(TenfoldError):
    """The configuration file or an environment override is missing, malformed or invalid."""


class ResourceLimitExceeded(TenfoldError):
    """The resource governor refused an operation because a limit would be exceeded."""


class SandboxViolation(ResourceLimitExceeded):
    """An operation falls outside the sandbox policy (a path or action not allowed)."""


class CgroupError(TenfoldError):
    """A cgroup could not be created, configured or removed (often: not root)."""


class NodeError(TenfoldError):
    """A measured node (namespace, veth, cgroup) could not be made, used or removed."""


class PluginError(TenfoldError):
    """A plugin failed to import, initialize or execute, hung past its timeout, or clashed."""


class ServiceError(TenfoldError):
    """A real service (PostgreSQL, etcd, broker, Redis, swtpm) could not start or answer."""


class BenchError(TenfoldError):
    """A benchmark scenario is unknown, misdeclared, or failed while running."""


class CryptoError(TenfoldError):
    """A key, signature or ciphertext is malformed or does not verify."""


class ServerError(TenfoldError):
    """An HTTP server could not start: bad options, a port in use, or a bind beyond
    loopback without credentials."""


class DecisionStreamError(TenfoldError):
    """A decision-stream line or a security event is malformed: not JSON, a missing or bad field."""
