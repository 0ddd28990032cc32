"""The attester: an agent that drives one TPM through tpm2-pytss (ESAPI over a TCTI).

The EK (TCG EK Credential Profile, RSA 2048 low-range template) and the AK
(a restricted signer: RSA-2048 RSASSA-SHA256 by default, as Keylime's
default, or ECDSA P-256) are both primaries of the endorsement
hierarchy, so they are re-derived identically from the TPM's seed after every
reset and no key blob has to be kept. The AK template carries a label in its
``unique`` field, so one TPM can hold several distinct AKs.

A quote and the PCR values are not read atomically; the agent re-reads and
re-quotes until the values hash to the signed digest (PCRs extended in between
would otherwise give the verifier a spurious mismatch).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tenfold.attestation_authority._eventlog import Event, encode_event_log, measure
from tenfold.attestation_authority._evidence import Evidence
from tenfold.attestation_authority._ima import IMA_PCR, ImaEntry, ima_extend_value, measure_file
from tenfold.attestation_authority._structs import (
    BANK_NAMES,
    TPM_ALG_SHA1,
    TPM_ALG_SHA256,
    PcrSelection,
    encode_tools_pcrs,
    parse_attest,
)
from tenfold.attestation_authority.errors import TpmError

logger = logging.getLogger("tenfold.attestation_authority.agent")

BOOT_LOG_PATH = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
IMA_LOG_PATH = Path("/sys/kernel/security/ima/ascii_runtime_measurements")
_QUOTE_ATTEMPTS = 4
# TCG EK Credential Profile 2.0, 2.2.1.4: the RSA 2048 EK certificate's NV index.
EK_CERT_NV_INDEX = 0x01C00002
_NV_CHUNK = 512  # below any TPM's MAX_NV_BUFFER_SIZE


@contextmanager
def _tss(what: str) -> Iterator[None]:
    from tpm2_pytss import TSS2_Exception

    try:
        yield
    except TSS2_Exception as exc:
        raise TpmError(f"TPM {what} failed: {exc}") from None


class Agent:
    """One TPM's attester: EK and AK, quotes over PCR banks, credential activation, logs.

    ``tcti`` is a TCTI configuration such as ``swtpm:host=127.0.0.1,port=2321``
    or ``device:/dev/tpmrm0``. ``banks`` are the banks the agent extends when it
    records its own measurements (:meth:`extend`), which keeps a crypto-agile
    event log of them; otherwise the platform's logs are read when present.
    """

    def __init__(
        self,
        tcti: str,
        *,
        ak_label: bytes = b"tenfold-ak",
        ak_type: str = "rsa",
        banks: Sequence[int] = (TPM_ALG_SHA1, TPM_ALG_SHA256),
        boot_log_path: Path = BOOT_LOG_PATH,
        ima_log_path: Path = IMA_LOG_PATH,
    ) -> None:
        from tpm2_pytss import ESAPI, TPM2_SU, TSS2_Exception
        from tpm2_pytss.TCTILdr import TCTILdr

        self.banks = tuple(banks)
        self.boot_log_path = boot_log_path
        self.ima_log_path = ima_log_path
        self._events: list[Event] = []
        self._ima: list[ImaEntry] = []
        # PCR values per selection spec as of the last quote whose digest matched them.
        self._quoted_pcrs: dict[str, dict[int, dict[int, bytes]]] = {}
        with _tss(f"connection to {tcti!r}"):
            self._tcti = TCTILdr.parse(tcti)
            self._esapi = ESAPI(self._tcti)
        with contextlib.suppress(TSS2_Exception):
            # Fails with TPM_RC_INITIALIZE when already started: the normal case.
            self._esapi.startup(TPM2_SU.CLEAR)
        self._ek = self._ak = None
        try:
            self._ek, self.ek_public = self._create_ek()
            self._ak, self.ak_public = self._create_ak(ak_label, ak_type)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush the transient keys and close the TCTI (a TPM has only a few object slots)."""
        from tpm2_pytss import TSS2_Exception

        esapi = getattr(self, "_esapi", None)
        if esapi is None:
            return
        for handle in (self._ak, self._ek):
            if handle is not None:
                with contextlib.suppress(TSS2_Exception):
                    esapi.flush_context(handle)
        esapi.close()
        self._esapi = None

    def shutdown(self) -> None:
        """TPM2_Shutdown(CLEAR): an orderly stop before the TPM loses power (swtpm stops).

        Without it the TPM's clock is no longer "safe" when it starts again, and a
        verifier refuses every quote as clock-unsafe.
        """
        from tpm2_pytss import TPM2_SU

        with _tss("Shutdown"):
            self.esapi.shutdown(TPM2_SU.CLEAR)

    @property
    def esapi(self) -> Any:
        if self._esapi is None:
            raise TpmError("agent is closed")
        return self._esapi

    def _create_ek(self) -> tuple[Any, bytes]:
        from tpm2_pytss import ESYS_TR, TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE
        from tpm2_pytss.internal.templates import ek_template

        template = ek_template.lookup("EK-RSA2048")
        public = TPM2B_PUBLIC(publicArea=template.template.publicArea)
        with _tss("EK creation"):
            handle, out, _, _, _ = self.esapi.create_primary(
                TPM2B_SENSITIVE_CREATE(), public, ESYS_TR.ENDORSEMENT
            )
        return handle, bytes(out.marshal())

    def _create_ak(self, label: bytes, ak_type: str) -> tuple[Any, bytes]:
        from tpm2_pytss import ESYS_TR, TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPMA_OBJECT

        attrs = (
            TPMA_OBJECT.RESTRICTED
            | TPMA_OBJECT.SIGN_ENCRYPT
            | TPMA_OBJECT.FIXEDTPM
            | TPMA_OBJECT.FIXEDPARENT
            | TPMA_OBJECT.SENSITIVEDATAORIGIN
            | TPMA_OBJECT.USERWITHAUTH
            | TPMA_OBJECT.NODA  # an empty password: dictionary-attack counting would lock it out
        )
        entropy = hashlib.sha256(label).digest()
        if ak_type == "rsa":
            public = TPM2B_PUBLIC.parse("rsa2048:rsassa-sha256:null", objectAttributes=attrs)
            public.publicArea.unique.rsa = entropy
        elif ak_type == "ecc":
            public = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=attrs)
            public.publicArea.unique.ecc.x = entropy
        else:
            raise TpmError(f"AK type must be 'rsa' or 'ecc', not {ak_type!r}")
        with _tss("AK creation"):
            handle, out, _, _, _ = self.esapi.create_primary(
                TPM2B_SENSITIVE_CREATE(), public, ESYS_TR.ENDORSEMENT
            )
        return handle, bytes(out.marshal())

    def ek_certificate(self) -> bytes | None:
        """The EK certificate the manufacturer stored in NV (DER), or ``None`` if there is none."""
        from tpm2_pytss import ESYS_TR, TSS2_Exception

        esapi = self.esapi
        try:
            handle = esapi.tr_from_tpmpublic(EK_CERT_NV_INDEX)
        except TSS2_Exception:
            return None  # the index is not defined: no certificate provisioned
        try:
            public, _ = esapi.nv_read_public(handle)
            size = public.nvPublic.dataSize
            data = b""
            with _tss("NV_Read of the EK certificate"):
                while len(data) < size:
                    chunk = min(_NV_CHUNK, size - len(data))
                    data += bytes(esapi.nv_read(handle, chunk, len(data), ESYS_TR.OWNER))
        finally:
            with contextlib.suppress(TSS2_Exception):
                esapi.tr_close(handle)
        return data

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """ActivateCredential: recover the registrar's secret, proving AK and EK share this TPM."""
        from tpm2_pytss import (
            ESYS_TR,
            TPM2_ALG,
            TPM2_SE,
            TPM2B_ENCRYPTED_SECRET,
            TPM2B_ID_OBJECT,
            TPMT_SYM_DEF,
        )

        blob, _ = TPM2B_ID_OBJECT.unmarshal(credential_blob)
        secret, _ = TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
        esapi = self.esapi
        with _tss("ActivateCredential"):
            # The EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT).
            session = esapi.start_auth_session(
                ESYS_TR.NONE,
                ESYS_TR.NONE,
                TPM2_SE.POLICY,
                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                TPM2_ALG.SHA256,
            )
            try:
                esapi.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
                out = esapi.activate_credential(
                    self._ak, self._ek, blob, secret, session1=ESYS_TR.PASSWORD, session2=session
                )
            finally:
                esapi.flush_context(session)
        return bytes(out)

    def read_pcrs(self, selection: Sequence[PcrSelection]) -> dict[int, dict[int, bytes]]:
        """PCR values per bank; TPM2_PCR_Read returns at most 8 digests a call."""
        from tpm2_pytss import TPML_PCR_SELECTION

        values: dict[int, dict[int, bytes]] = {}
        for sel in selection:
            bank = values.setdefault(sel.bank, {})
            todo = list(sel.indices)
            while todo:
                spec = f"{BANK_NAMES[sel.bank]}:{','.join(str(i) for i in todo[:8])}"
                with _tss("PCR_Read"):
                    _, out_sel, digests = self.esapi.pcr_read(TPML_PCR_SELECTION.parse(spec))
                got = [i for s in out_sel for i in _indices(bytes(s.pcrSelect), s.sizeofSelect)]
                if not got:
                    raise TpmError(f"TPM has no {BANK_NAMES[sel.bank]} bank for PCRs {todo}")
                for index, digest in zip(got, digests, strict=True):
                    bank[index] = bytes(digest)
                todo = [i for i in todo if i not in bank]
        return values

    def quote(self, nonce: bytes, selection: Sequence[PcrSelection]) -> Evidence:
        """Quote ``selection`` with ``nonce`` as qualifying data; PCR values and logs attached."""
        from tpm2_pytss import TPM2B_DATA, TPML_PCR_SELECTION

        spec = "+".join(
            f"{BANK_NAMES[s.bank]}:{','.join(str(i) for i in s.indices)}" for s in selection
        )
        tpm_selection = TPML_PCR_SELECTION.parse(spec)
        # The values last quoted for this selection stand in for a PCR_Read: the quote's
        # own PCR digest is checked against them, so values that changed since are never
        # sent; they are read again (and the quote repeated) only then. One TPM command
        # a check instead of two, as long as the PCRs hold still.
        values = self._quoted_pcrs.get(spec)
        for _ in range(_QUOTE_ATTEMPTS + 1):  # one more: the remembered values may be stale
            if values is None:
                values = self.read_pcrs(selection)
            with _tss("Quote"):
                attest, signature = self.esapi.quote(self._ak, tpm_selection, TPM2B_DATA(nonce))
            attest_bytes = bytes(attest)
            digest = hashlib.sha256()
            for sel in selection:
                for index in sel.indices:
                    digest.update(values[sel.bank][index])
            if parse_attest(attest_bytes).pcr_digest == digest.digest():
                self._quoted_pcrs[spec] = values
                return Evidence(
                    attest_bytes,
                    bytes(signature.marshal()),
                    encode_tools_pcrs(values),
                    self.event_log(),
                    self.ima_log(),
                )
            values = None
            self._quoted_pcrs.pop(spec, None)
            logger.info("PCRs changed since they were read; reading and quoting again")
        raise TpmError(f"PCRs kept changing during {_QUOTE_ATTEMPTS} quote attempts")

    def extend(self, pcr: int, data: bytes) -> Event:
        """Measure ``data`` into ``pcr`` in every bank and record it in the agent's event log."""
        from tpm2_pytss import TPM2_ALG, TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

        event = measure(data, self.banks, pcr)
        values = TPML_DIGEST_VALUES(
            [
                TPMT_HA(hashAlg=TPM2_ALG(alg), digest=TPMU_HA(**{BANK_NAMES[alg]: d}))
                for alg, d in event.digests.items()
            ]
        )
        with _tss("PCR_Extend"):
            self.esapi.pcr_extend(_pcr_handle(pcr), values)
        self._quoted_pcrs.clear()
        self._events.append(event)
        return event

    def measure_file(self, path: str, data: bytes) -> ImaEntry:
        """Record a file as IMA would: an ``ima-ng`` entry extended into PCR 10 of every bank."""
        from tpm2_pytss import TPM2_ALG, TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

        entry = measure_file(path, data)
        values = TPML_DIGEST_VALUES(
            [
                TPMT_HA(
                    hashAlg=TPM2_ALG(bank),
                    digest=TPMU_HA(**{BANK_NAMES[bank]: ima_extend_value(entry, bank)}),
                )
                for bank in self.banks
            ]
        )
        with _tss("PCR_Extend"):
            self.esapi.pcr_extend(_pcr_handle(IMA_PCR), values)
        self._quoted_pcrs.clear()
        self._ima.append(entry)
        return entry

    def event_log(self) -> bytes | None:
        """The platform's measured-boot log if readable, else the log of :meth:`extend` calls."""
        try:
            return self.boot_log_path.read_bytes()
        except OSError:
            pass
        return encode_event_log(self.banks, self._events) if self._events else None

    def ima_log(self) -> bytes | None:
        """The kernel's IMA measurement list (ASCII) if readable, else :meth:`measure_file`'s."""
        try:
            return self.ima_log_path.read_bytes()
        except OSError:
            pass
        return "".join(e.line() + "\n" for e in self._ima).encode() if self._ima else None


def _pcr_handle(pcr: int) -> Any:
    from tpm2_pytss import ESYS_TR

    return getattr(ESYS_TR, f"PCR{pcr}")


def _indices(select: bytes, size: int) -> list[int]:
    bits = int.from_bytes(select[:size], "little")
    return [i for i in range(size * 8) if bits >> i & 1]


def default_selection(indices: Sequence[int] = (0, 1, 2, 3, 4, 5, 6, 7)) -> tuple[PcrSelection]:
    """The usual quote: SHA-256 bank, boot PCRs."""
    return (PcrSelection(TPM_ALG_SHA256, tuple(sorted(indices))),)


def tcti_from_env() -> str:
    """``TPM2TOOLS_TCTI`` if set, else the kernel resource manager."""
    return os.environ.get("TPM2TOOLS_TCTI", "device:/dev/tpmrm0")
