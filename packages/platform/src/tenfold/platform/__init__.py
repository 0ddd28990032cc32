"""tenfold platform: the one member that composes systems, signal to enforcement.

Auth-log lines go through the autoblocker's rules; each decision is appended to
the embedded ledger, and the decision stream (``tenfold.core.events``) is
followed by the cloud kernel's XDP bouncer on the victim side of a veth pair in
network namespaces the platform creates.
"""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.platform._platform import Platform as Platform
    from tenfold.platform._platform import ReplayResult as ReplayResult
    from tenfold.platform.errors import NotUp as NotUp
    from tenfold.platform.errors import PlatformError as PlatformError

__all__ = ["NotUp", "Platform", "PlatformError", "ReplayResult"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._platform": ["Platform", "ReplayResult"],
        ".errors": ["NotUp", "PlatformError"],
    },
    __all__,
)
