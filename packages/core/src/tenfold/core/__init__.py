"""tenfold.core: errors, config, resource governor, plugins, crypto, bench harness, services.

The errors are exported here; the rest lives in public modules (``tenfold.core.config``,
``.governor``, ``.plugins``, ``.crypto``, ``.bench``, ``.services``, ``.cli``, ``.exports``,
``.testing``), except the measured nodes (:class:`NodeSet`, from ``.nodes``).
"""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.core.errors import CgroupError as CgroupError
    from tenfold.core.errors import CheckFailed as CheckFailed
    from tenfold.core.errors import ConfigError as ConfigError
    from tenfold.core.errors import CryptoError as CryptoError
    from tenfold.core.errors import NodeError as NodeError
    from tenfold.core.errors import PluginError as PluginError
    from tenfold.core.errors import ResourceLimitExceeded as ResourceLimitExceeded
    from tenfold.core.errors import SandboxViolation as SandboxViolation
    from tenfold.core.errors import ServerError as ServerError
    from tenfold.core.errors import ServiceError as ServiceError
    from tenfold.core.errors import TenfoldError as TenfoldError
    from tenfold.core.nodes import Node as Node
    from tenfold.core.nodes import NodeSet as NodeSet
    from tenfold.core.nodes import leftover_nodes as leftover_nodes
    from tenfold.core.nodes import recover_nodes as recover_nodes

__version__ = "0.1.0"

__all__ = [
    "CgroupError",
    "CheckFailed",
    "ConfigError",
    "CryptoError",
    "Node",
    "NodeError",
    "NodeSet",
    "PluginError",
    "ResourceLimitExceeded",
    "SandboxViolation",
    "ServerError",
    "ServiceError",
    "TenfoldError",
    "__version__",
    "leftover_nodes",
    "recover_nodes",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".errors": [
            "CgroupError",
            "CheckFailed",
            "ConfigError",
            "CryptoError",
            "NodeError",
            "PluginError",
            "ResourceLimitExceeded",
            "SandboxViolation",
            "ServerError",
            "ServiceError",
            "TenfoldError",
        ],
        ".nodes": ["Node", "NodeSet", "leftover_nodes", "recover_nodes"],
    },
    __all__,
)
