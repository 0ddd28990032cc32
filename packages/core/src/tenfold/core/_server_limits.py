"""Defaults of :class:`tenfold.core.server.ServerOptions` that the CLI shows in ``--help``.

Kept apart (no imports) so that ``serve --help`` does not load the server.
"""

RATE_PER_S = 1000.0
"""Requests per second per client (the burst is twice that)."""

MAX_BODY_BYTES = 1 << 20
"""The largest request body accepted."""
