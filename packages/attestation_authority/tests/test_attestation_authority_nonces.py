"""The nonce store: one use, a TTL, bound to the agent it was issued to."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.attestation_authority import NonceStore
from tenfold.attestation_authority._nonce import NonceStatus


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nonce_is_accepted_once() -> None:
    store = NonceStore(10)
    nonce = store.generate_nonce("a")
    assert len(nonce) == 20
    assert store.consume(nonce, "a") is NonceStatus.FRESH
    assert store.consume(nonce, "a") is NonceStatus.REPLAYED


def test_nonce_expires_after_ttl() -> None:
    clock = FakeClock()
    store = NonceStore(5, clock=clock)
    early, late = store.generate_nonce("a"), None
    clock.now += 4.9
    late = store.generate_nonce("a")
    clock.now += 0.2
    assert store.consume(early, "a") is NonceStatus.EXPIRED
    assert store.consume(late, "a") is NonceStatus.FRESH


def test_never_issued_and_other_agent_are_refused() -> None:
    store = NonceStore(5)
    assert store.consume(b"\x00" * 20, "a") is NonceStatus.UNKNOWN
    nonce = store.generate_nonce("a")
    assert store.consume(nonce, "b") is NonceStatus.OTHER_AGENT
    assert store.consume(nonce, "a") is NonceStatus.REPLAYED  # spent by the failed attempt


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(["issue", "use", "tick"]), st.integers(0, 9)), max_size=80)
)
def test_store_never_accepts_a_nonce_twice_or_late(script) -> None:
    clock = FakeClock()
    store = NonceStore(3, clock=clock)
    issued: list[tuple[bytes, float]] = []
    accepted: set[bytes] = set()
    for action, k in script:
        if action == "issue":
            issued.append((store.generate_nonce("x"), clock.now))
        elif action == "tick":
            clock.now += k * 0.5
        elif issued:
            nonce, at = issued[k % len(issued)]
            status = store.consume(nonce, "x")
            if status is NonceStatus.FRESH:
                assert nonce not in accepted
                assert clock.now < at + 3
                accepted.add(nonce)
            else:
                assert nonce in accepted or clock.now >= at + 3
    assert len(store) <= len(issued) - len(accepted)


def test_store_stays_bounded_under_a_steady_stream() -> None:
    clock = FakeClock()
    store = NonceStore(1.0, clock=clock)
    first = store.generate_nonce("a")
    used = store.generate_nonce("a")
    assert store.consume(used, "a") is NonceStatus.FRESH
    for _ in range(5000):
        clock.now += 0.01
        store.generate_nonce("a")
    # Two generations of 100 nonces at most are live; older ones are forgotten.
    assert len(store) <= 201
    assert store.consume(first, "a") is NonceStatus.UNKNOWN
    assert store.consume(used, "a") is NonceStatus.UNKNOWN


def test_late_nonce_is_named_expired_for_one_more_generation() -> None:
    clock = FakeClock()
    store = NonceStore(10, clock=clock)
    nonce = store.generate_nonce("a")
    clock.now += 15  # past its expiry, one generation later
    assert store.consume(nonce, "a") is NonceStatus.EXPIRED
    other = store.generate_nonce("a")
    clock.now += 100  # long idle
    assert store.consume(other, "a") is NonceStatus.EXPIRED


def test_readmitted_nonce_keeps_its_new_lifetime() -> None:
    clock = FakeClock()
    store = NonceStore(5, clock=clock)
    nonce = store.generate_nonce("a")
    clock.now += 4
    store.admit(nonce, "a")  # e.g. re-issued by a peer replica
    clock.now += 2  # past the first lifetime, within the second
    assert store.consume(nonce, "a") is NonceStatus.FRESH
    assert store.consume(nonce, "a") is NonceStatus.REPLAYED
