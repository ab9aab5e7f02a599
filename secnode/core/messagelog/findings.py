"""The verifier's shared bookkeeping: located records and the failures in log order.

Each family of checks (chain, stamps, signatures, archives) reports into one
:class:`Findings`, which keys every failure by where it sits in the log
(source rank, chain, seq, detection layer) so the report can name the
*first* failure in log order whichever check found it, and which folds a run
of records sharing one cause into a single failure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from secnode.core.messagelog.record import LogRecord, canonical_bytes, record_hash
from secnode.core.messagelog.report import Failure, FailureKind, VerificationReport

#: An ``order_seq`` after every record: findings about a container's whole content.
INF = 2**62


@dataclass(frozen=True)
class Entry:
    """A record with where it was found."""

    record: LogRecord
    origin: str
    rank: int  # position of the source in log order: archives by sequence, then live
    strict: bool  # archived records must be stamped whatever their age


def as_seq(record: LogRecord, seq: int, prev: bytes) -> bytes:
    """The hash ``record`` would have if it had been sealed at ``seq`` after ``prev``."""
    return record_hash(prev, canonical_bytes(dataclasses.replace(record, seq=seq)))


class Findings:
    """The failures found so far, each with its place in log order."""

    def __init__(self, report: VerificationReport) -> None:
        self.report = report
        self.checked = report.checked  # what was checked, by kind, for the report
        self._failures: list[tuple[tuple[int, int, int, int, int], Failure]] = []
        self._counter = 0
        self._chain_rank: dict[str, int] = {}

    def fail(
        self,
        kind: FailureKind,
        message: str,
        *,
        rank: int,
        layer: int,
        chain_id: str | None = None,
        seq: int | None = None,
        record: LogRecord | None = None,
        batch_id: str | None = None,
        archive: str | None = None,
        order_seq: int | None = None,
    ) -> int:
        """Record a failure; ``rank``/``order_seq``/``layer`` place it in log order.

        Returns its number, which :meth:`extend_run` takes to grow it into a run.
        """
        if record is not None:
            chain_id, seq = record.chain_id, record.seq
        chain_rank = self._chain_rank.setdefault(chain_id or "", len(self._chain_rank))
        position = order_seq if order_seq is not None else (seq if seq is not None else -1)
        self._counter += 1
        key = (rank, chain_rank, position, layer, self._counter)
        failure = Failure(
            kind, message, chain_id, seq, record.id if record else None, batch_id, archive
        )
        self._failures.append((key, failure))
        return len(self._failures) - 1

    def extend_run(self, run: int | None, record: LogRecord) -> bool:
        """Fold ``record`` into failure number ``run`` if it directly follows it.

        A chain recomputed after one forged record makes every later proof
        fail; those are one finding, reported once with the range it spans.
        """
        if run is None:
            return False
        key, last = self._failures[run]
        end = last.last_seq if last.last_seq is not None else last.seq
        if last.chain_id != record.chain_id or end != record.seq - 1:
            return False
        self._failures[run] = (key, dataclasses.replace(last, last_seq=record.seq))
        return True

    def note(self, text: str) -> None:
        """Something the auditor should know that is not a failure."""
        self.report.notes.append(text)

    def finish(self) -> VerificationReport:
        """The report with its failures in log order."""
        self._failures.sort(key=lambda item: item[0])
        self.report.failures = [f for _, f in self._failures]
        return self.report
