"""Test inputs the pipeline's tests share (not part of the public API)."""

from __future__ import annotations

import msgspec


class Order(msgspec.Struct):
    """The test pipelines' event: one in three is a view, the rest buys."""

    id: int
    user_id: int
    kind: str
    amount: float


def order(i: int) -> bytes:
    """Order ``i`` as the JSON bytes a producer sends (``i % 3 == 0`` is a view)."""
    return msgspec.json.encode(Order(i, i % 50, ("buy", "view")[i % 3 == 0], float(i)))


#: Orders from a Kafka topic, decoded, filtered to buys, into a Postgres table of the
#: topic's name. Slots: name, bootstrap, topic, dsn, and idle: a whole source line
#: (``stop_when_idle_s = N``) or "".
ORDERS_KAFKA_TO_POSTGRES = """
[pipeline]
name = "{name}"
batch_size = 1000
linger_ms = 20

[schemas.Order]
id = "int"
user_id = "int"
kind = "str"
amount = "float"

[source]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{topic}"
{idle}

[[stages]]
type = "decode"
schema = "Order"

[[stages]]
type = "filter"
where = "kind == 'buy'"

[sink]
type = "postgres"
dsn = "{dsn}"
table = "{topic}"
"""
