"""pytest fixtures for the real services (registered as the ``tenfold_services`` plugin).

Each fixture starts its server once per test module and stops it afterwards.
A server that fails to start fails the test with the server's own log lines.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenfold.core.services import Etcd, KafkaBroker, Postgres, Redis, Swtpm


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Redis]:
    with Redis() as server:
        yield server


@pytest.fixture(scope="module")
def etcd3() -> Iterator[Etcd]:
    with Etcd(members=3) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="module")
def swtpm() -> Iterator[Swtpm]:
    with Swtpm() as tpm:
        yield tpm
