"""Property and example tests for the pure parsers: TPM structures, PCR blobs, policy, event log."""

import contextlib
import hashlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.attestation_authority import (
    Event,
    PcrSelection,
    Policy,
    encode_event_log,
    parse_event_log,
    parse_policy,
    replay_event_log,
)
from tenfold.attestation_authority._policy import Expect
from tenfold.attestation_authority._structs import (
    DIGEST_SIZES,
    TPM_ALG_SHA1,
    TPM_ALG_SHA256,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    decode_tools_pcrs,
    encode_tools_pcrs,
    parse_attest,
    parse_signature,
)
from tenfold.attestation_authority.errors import MalformedStructure, PolicySyntaxError

BANKS = [TPM_ALG_SHA1, TPM_ALG_SHA256, 0x000C, 0x000D]


def build_attest(
    *,
    magic: int = TPM_GENERATED_VALUE,
    nonce: bytes = b"n" * 20,
    clock: int = 1000,
    reset: int = 1,
    selections: tuple[PcrSelection, ...] = (PcrSelection(TPM_ALG_SHA256, (0, 1, 7)),),
    digest: bytes = b"d" * 32,
) -> bytes:
    out = struct.pack(">IH", magic, TPM_ST_ATTEST_QUOTE)
    out += struct.pack(">H", 34) + b"\x00\x0b" + b"q" * 32
    out += struct.pack(">H", len(nonce)) + nonce
    out += struct.pack(">QIIB", clock, reset, 0, 1) + struct.pack(">Q", 7)
    out += struct.pack(">I", len(selections))
    for sel in selections:
        bits = sum(1 << i for i in sel.indices)
        out += struct.pack(">HB", sel.bank, 3) + bits.to_bytes(3, "little")
    out += struct.pack(">H", len(digest)) + digest
    return out


selections_st = st.lists(
    st.tuples(st.sampled_from(BANKS), st.sets(st.integers(0, 23), min_size=1)),
    min_size=1,
    max_size=4,
    unique_by=lambda t: t[0],
).map(lambda xs: tuple(PcrSelection(b, tuple(sorted(i))) for b, i in xs))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(selections_st, st.binary(max_size=64), st.integers(0, 2**63), st.integers(0, 2**32 - 1))
def test_attest_round_trips_fields(selections, nonce, clock, reset) -> None:
    blob = build_attest(nonce=nonce, clock=clock, reset=reset, selections=selections)
    attest = parse_attest(blob)
    assert attest.magic == TPM_GENERATED_VALUE
    assert attest.extra_data == nonce
    assert (attest.clock, attest.reset_count, attest.safe) == (clock, reset, True)
    assert attest.selections == selections
    assert attest.pcr_digest == b"d" * 32


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_truncation_or_extension_is_refused(data) -> None:
    blob = build_attest()
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(MalformedStructure) as info:
        parse_attest(blob[:cut])
    assert not info.value.oversized
    extra = data.draw(st.binary(min_size=1, max_size=2000))
    with pytest.raises(MalformedStructure) as info:
        parse_attest(blob + extra)
    assert info.value.oversized


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_never_raise_anything_but_malformed(blob) -> None:
    for parser in (parse_attest, parse_signature, decode_tools_pcrs, parse_event_log):
        with contextlib.suppress(MalformedStructure):
            parser(blob)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(BANKS),
        st.dictionaries(st.integers(0, 23), st.binary(min_size=20, max_size=64), min_size=1),
        min_size=1,
        max_size=4,
    )
)
def test_tools_pcr_blob_round_trips(values) -> None:
    selections, digests = decode_tools_pcrs(encode_tools_pcrs(values))
    assert [s.bank for s in selections] == list(values)
    expected = [values[b][i] for b in values for i in sorted(values[b])]
    assert digests == expected
    assert all(s.indices == tuple(sorted(values[s.bank])) for s in selections)


def test_ecdsa_signature_becomes_der() -> None:
    r, s = b"\x80" + b"\x01" * 31, b"\x00\x00" + b"\x02" * 30
    blob = struct.pack(">HHH", 0x18, 0x0B, 32) + r + struct.pack(">H", 32) + s
    sig = parse_signature(blob)
    assert sig.value[0] == 0x30 and sig.value[2:4] == b"\x02\x21"  # r gains a sign byte
    with pytest.raises(MalformedStructure, match="trailing"):
        parse_signature(blob + b"\x00")
    with pytest.raises(MalformedStructure, match="scheme"):
        parse_signature(struct.pack(">HH", 0x99, 0x0B))


digest_rule = st.sampled_from(BANKS).flatmap(
    lambda bank: st.tuples(
        st.just(bank),
        st.one_of(
            st.sampled_from(list(Expect)),
            st.frozensets(
                st.binary(min_size=DIGEST_SIZES[bank], max_size=DIGEST_SIZES[bank]),
                min_size=1,
                max_size=3,
            ),
        ),
    )
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.tuples(st.sampled_from(BANKS), st.integers(0, 23)), digest_rule))
def test_policy_render_then_parse_is_identity(raw) -> None:
    rules = {}
    for (bank, index), (rule_bank, drawn) in raw.items():
        if isinstance(drawn, frozenset) and rule_bank != bank:
            drawn = frozenset(v[:1] * DIGEST_SIZES[bank] for v in drawn)  # noqa: PLW2901
        rules[(bank, index)] = drawn
    policy = Policy(rules)
    assert parse_policy(policy.render()) == policy
    assert parse_policy(policy.render()).render() == policy.render()


def test_policy_selection_ranges_and_comments() -> None:
    policy = parse_policy("# boot\nsha256:0-2,7 = *   # any\nsha1:10 = replay\n\n")
    assert policy.selection == (
        PcrSelection(TPM_ALG_SHA1, (10,)),
        PcrSelection(TPM_ALG_SHA256, (0, 1, 2, 7)),
    )
    assert policy.needs_event_log


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("sha256:0 = abcd", "policy:1:12", "64 hex digits"),
        ("md5:0 = *", "policy:1:1", "unknown bank"),
        ("sha256:24 = *", "policy:1:8", "out of range"),
        ("sha256:5-2 = *", "policy:1:8", "empty PCR range"),
        ("sha256 0 = *", "policy:1:8", "expected ':'"),
        ("sha256:0 = * *", "policy:1:14", "unexpected"),
        ("sha256:0 = *\n\nsha256:0 = *", "policy:3:8", "already named"),
        ("sha256:0 = ", "policy:1:11", "end of line"),
        ("sha256:0 = $", "policy:1:12", "unexpected character"),
    ],
)
def test_policy_errors_name_line_and_column(text, where, what) -> None:
    with pytest.raises(PolicySyntaxError) as info:
        parse_policy(text)
    assert str(info.value).startswith(where)
    assert what in str(info.value)


events_st = st.lists(
    st.tuples(st.integers(0, 23), st.integers(1, 0x80000000), st.binary(max_size=40)),
    max_size=20,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_st)
def test_event_log_round_trips_and_replays_like_a_tpm(raw) -> None:
    banks = [TPM_ALG_SHA1, TPM_ALG_SHA256]
    events = [
        Event(
            pcr,
            typ if typ != 3 else 4,
            {
                b: hashlib.new(n, data).digest()
                for b, n in ((TPM_ALG_SHA1, "sha1"), (TPM_ALG_SHA256, "sha256"))
            },
            data,
        )
        for pcr, typ, data in raw
    ]
    sizes, parsed = parse_event_log(encode_event_log(banks, events))
    assert sizes == {TPM_ALG_SHA1: 20, TPM_ALG_SHA256: 32}
    assert parsed == events
    replayed = replay_event_log(parsed, TPM_ALG_SHA256)
    for pcr in {e.pcr for e in events}:
        value = bytes(32)
        for e in events:
            if e.pcr == pcr:
                value = hashlib.sha256(value + e.digests[TPM_ALG_SHA256]).digest()
        assert replayed[pcr] == value


def test_event_log_startup_locality_and_truncation() -> None:
    banks = [TPM_ALG_SHA256]
    locality = Event(0, 3, {TPM_ALG_SHA256: bytes(32)}, b"StartupLocality\x00\x03")
    ev = Event(0, 1, {TPM_ALG_SHA256: b"\x11" * 32}, b"x")
    blob = encode_event_log(banks, [locality, ev])
    replayed = replay_event_log(parse_event_log(blob)[1], TPM_ALG_SHA256)
    assert replayed[0] == hashlib.sha256(bytes(31) + b"\x03" + b"\x11" * 32).digest()
    for cut in range(1, len(blob)):
        if cut in (len(encode_event_log(banks, [])), len(encode_event_log(banks, [locality]))):
            continue  # a cut between records leaves a shorter, valid log
        with pytest.raises(MalformedStructure):
            parse_event_log(blob[:cut])
