"""tenfold.core: errors, config, resource governor, plugins, crypto, bench harness, services.

The errors are exported here; the rest lives in public modules (``tenfold.core.config``,
``.governor``, ``.plugins``, ``.crypto``, ``.bench``, ``.services``, ``.cli``, ``.exports``,
``.testing``).
"""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.core.errors import CgroupError as CgroupError
    from tenfold.core.errors import CheckFailed as CheckFailed
    from tenfold.core.errors import ConfigError as ConfigError
    from tenfold.core.errors import CryptoError as CryptoError
    from tenfold.core.errors import PluginError as PluginError
    from tenfold.core.errors import ResourceLimitExceeded as ResourceLimitExceeded
    from tenfold.core.errors import SandboxViolation as SandboxViolation
    from tenfold.core.errors import ServerError as ServerError
    from tenfold.core.errors import ServiceError as ServiceError
    from tenfold.core.errors import TenfoldError as TenfoldError

__version__ = "0.1.0"

__all__ = [
    "CgroupError",
    "CheckFailed",
    "ConfigError",
    "CryptoError",
    "PluginError",
    "ResourceLimitExceeded",
    "SandboxViolation",
    "ServerError",
    "ServiceError",
    "TenfoldError",
    "__version__",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".errors": [
            "CgroupError",
            "CheckFailed",
            "ConfigError",
            "CryptoError",
            "PluginError",
            "ResourceLimitExceeded",
            "SandboxViolation",
            "ServerError",
            "ServiceError",
            "TenfoldError",
        ]
    },
    __all__,
)
