"""Message signatures judged offline: the signature, its signer's chain and OCSP staple.

A log holds thousands of records signed by the same few certificates, so the
verdicts are cached, but only for the time interval in which they provably
hold (:class:`Window`): a record signed after a certificate expired or after
its staple went stale is judged afresh and becomes a finding. Kept apart from
the chain and stamp checks because it is the only part that knows X.509 path
building and OCSP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509 import ocsp as x509_ocsp

from certs.chain import ChainError, verify_chain
from certs.cms import CMSError, verify_detached
from certs.ocsp import CLOCK_SKEW, OCSPError, OCSPStatus, validate_response
from secnode.core.jsonfmt import cert_sha256
from secnode.core.messagelog.findings import Entry, Findings
from secnode.core.messagelog.record import LogRecord
from secnode.core.messagelog.report import FailureKind, TrustAnchors, VerifyOptions
from secnode.core.msgsig import SignatureError, SignatureVerifier

EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Window:
    """A closed time interval in which a cached verdict holds; outside it, judge afresh."""

    start: dt.datetime
    end: dt.datetime

    def covers(self, when: dt.datetime) -> bool:
        return self.start <= when <= self.end

    def within(self, start: dt.datetime, end: dt.datetime) -> Window:
        return Window(max(self.start, start), min(self.end, end))

    @classmethod
    def of_certificates(cls, certs: Iterable[x509.Certificate]) -> Window:
        """Where every one of ``certs`` is within its validity period."""
        window = cls(EARLIEST, LATEST)
        for cert in certs:
            window = window.within(cert.not_valid_before_utc, cert.not_valid_after_utc)
        return window


def staple_window(
    der: bytes, status: OCSPStatus, issuer: x509.Certificate, max_age: float | None
) -> Window:
    """Where ``validate_response`` is known to accept the response: the freshness rule of
    :func:`certs.ocsp.validate_response`, narrowed to the validity of every certificate
    the response carries other than the issuer (a delegated responder's among them)."""
    end = LATEST
    if max_age is not None:
        end = min(end, status.this_update + dt.timedelta(seconds=max_age))
    if status.next_update is not None:
        end = min(end, status.next_update)
    window = Window(status.this_update - CLOCK_SKEW, end)
    carried = x509_ocsp.load_der_ocsp_response(der).certificates
    signers = Window.of_certificates(c for c in carried if c != issuer)
    return window.within(signers.start, signers.end)


def status_problem(status: str, when: dt.datetime) -> str | None:
    """The finding for an OCSP status other than ``good``."""
    if status != "good":
        return f"signer certificate status was {status} at {when}"
    return None


class SignerCheck:
    """Checks each signed record; ``intermediates`` and ``ocsp`` are the evidence's own."""

    def __init__(
        self,
        findings: Findings,
        anchors: TrustAnchors,
        options: VerifyOptions,
        intermediates: list[x509.Certificate],
        ocsp: dict[bytes, bytes],
    ) -> None:
        self.fail = findings.fail
        self.checked = findings.checked
        self.anchors = anchors
        self.options = options
        self.intermediates = intermediates
        self.ocsp = ocsp  # sha256 -> DER OCSP response
        self.sig_verifier = SignatureVerifier()
        self._chain_windows: dict[bytes, Window] = {}  # signer sha256 -> path valid in
        self._issuers: dict[bytes, x509.Certificate] = {}
        self._staples: dict[tuple[bytes, bytes], tuple[Window, str]] = {}  # -> status

    def check(self, entry: Entry) -> None:
        """A signed record's signature, signer chain and staple; a problem is ``bad_signature``."""
        r = entry.record
        if r.signature is None or r.signed_digest is None:
            return
        self.checked["signatures"] += 1
        problem = self._signature_problem(r)
        if problem is not None:
            self.fail(
                FailureKind.BAD_SIGNATURE,
                problem,
                rank=entry.rank,
                layer=2,
                record=r,
                archive=entry.origin,
            )

    def _signature_problem(self, r: LogRecord) -> str | None:
        assert r.signature is not None and r.signed_digest is not None
        try:
            signer = self.sig_verifier.verify(r.signature, r.signed_digest)
        except SignatureError as first:
            try:  # archives/other producers may use signed attributes
                signer = verify_detached(r.signature, r.signed_digest).signer
            except CMSError:
                return f"message signature does not verify over signed_digest: {first}"
        signer_sha = cert_sha256(signer)
        if r.signer_cert_sha256 is not None and signer_sha != r.signer_cert_sha256:
            return "signature was made by another certificate than signer_cert_sha256 names"
        chain_problem = self._chain_problem(signer, signer_sha, r.time)
        if chain_problem is not None:
            return chain_problem
        if r.ocsp_sha256 is not None and self.options.check_ocsp:
            return self._ocsp_problem(r, signer, signer_sha)
        return None

    def _chain_problem(
        self, signer: x509.Certificate, signer_sha: bytes, when: dt.datetime
    ) -> str | None:
        """The signer's chain judged at the record's own time.

        A verified path is cached with the interval in which every certificate on
        it is valid; a record inside it needs no new path building, any other one
        is judged afresh (a cache by calendar hour let a record signed after the
        certificate expired pass on the verdict of an earlier one).
        """
        window = self._chain_windows.get(signer_sha)
        if window is not None and window.covers(when):
            return None
        try:
            path = verify_chain(signer, self.anchors.ca_certs, self.intermediates, at=when)
        except ChainError as exc:
            return f"signer certificate not trusted at {when}: {exc}"
        self._chain_windows[signer_sha] = Window.of_certificates(path)
        self._issuers[signer_sha] = path[1]
        return None

    def _ocsp_problem(
        self, r: LogRecord, signer: x509.Certificate, signer_sha: bytes
    ) -> str | None:
        """The staple judged at the record's own time.

        A response that verified is cached with the interval in which it is fresh
        (``thisUpdate`` minus the clock skew up to ``thisUpdate`` + the maximum age
        and ``nextUpdate``, within its delegated signer's validity); a record
        outside that interval is validated afresh, so every record signed after
        the staple went stale is a finding, not only those of a later minute.
        """
        assert r.ocsp_sha256 is not None
        key = (r.ocsp_sha256, signer_sha)
        known = self._staples.get(key)
        if known is not None and known[0].covers(r.time):
            return status_problem(known[1], r.time)
        der = self.ocsp.get(r.ocsp_sha256)
        if der is None:
            return f"OCSP response {r.ocsp_sha256.hex()} named by the record is not in the evidence"
        issuer = self._issuers.get(signer_sha)
        if issuer is None:
            return "cannot find the issuer of the signer certificate to check its OCSP response"
        try:
            status = validate_response(
                der, signer, issuer, now=r.time, max_age=self.options.ocsp_max_age
            )
        except OCSPError as exc:
            return f"OCSP response does not prove the signer's status at {r.time}: {exc}"
        self._staples[key] = (
            staple_window(der, status, issuer, self.options.ocsp_max_age),
            status.status,
        )
        return status_problem(status.status, r.time)
