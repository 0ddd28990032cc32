"""Real servers for systems and tests: PostgreSQL, Redis, etcd, a Kafka-protocol broker, swtpm.

Each one runs on 127.0.0.1 on a free port, keeps its data under ``.tenfold/run/``
(or ``$TENFOLD_RUN_DIR``), is waited for until it answers, and is stopped by its
own pid (SIGTERM, then SIGKILL after a grace period). Each is a context manager;
leaving the block stops the server and removes its data directory. A server that
fails to start raises :class:`ServiceError` carrying the last lines of its own log.

Every process is started in its own session so that a stop never signals ours;
an ``atexit`` hook stops whatever is still running when the interpreter exits.
One module per server; the process handling they share is in ``_process``.
"""

from tenfold.core.services._process import Service as Service
from tenfold.core.services._process import free_port as free_port
from tenfold.core.services._process import run_dir as run_dir
from tenfold.core.services._process import running_services as running_services
from tenfold.core.services.etcd import Etcd as Etcd
from tenfold.core.services.kafka import KafkaBroker as KafkaBroker
from tenfold.core.services.kafka import tansu_binary as tansu_binary
from tenfold.core.services.postgres import Postgres as Postgres
from tenfold.core.services.redis import Redis as Redis
from tenfold.core.services.swtpm import Swtpm as Swtpm

__all__ = [
    "Etcd",
    "KafkaBroker",
    "Postgres",
    "Redis",
    "Service",
    "Swtpm",
    "free_port",
    "run_dir",
    "running_services",
    "tansu_binary",
]
