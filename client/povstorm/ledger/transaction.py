"""A Firestore transaction whose every RPC gives up within the ledger's bound.

Where it sits: ``Ledger._run`` (ledger.py) runs each transaction function in a
``_BoundedTransaction`` so that an outage or contention becomes a quick
TransientError (the event goes back to Pub/Sub) instead of a function held for
minutes; ``_outage`` finds the outage the library's wrapper hides.

Written against google-cloud-firestore 2.x (pinned ``>=2.16,<3`` in
pyproject.toml): it overrides the library's private ``Transaction._begin``,
``_commit`` and ``_rollback`` with the same requests, and reads private client
attributes (``_firestore_api``, ``_database_string``, ``_rpc_metadata``).
Recheck all of them on every upgrade of that library.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud.firestore_v1.transaction import Transaction

# A read gives up after this long and the event goes back to Pub/Sub: the
# client's default retry would hold a function for minutes in an outage.
RPC_RETRY = Retry(initial=0.1, maximum=2.0, timeout=15.0)
RPC_TIMEOUT = 10.0


class _BoundedTransaction(Transaction):
    """A transaction whose Begin, Commit and Rollback give up after RPC_RETRY.

    The library's ``_begin``, ``_commit`` and ``_rollback`` take no retry
    argument, so they use the gapic defaults (UNAVAILABLE retried for 60 s
    each): an outage at the begin held a function for about 4 minutes before
    the event went back to Pub/Sub (``_run`` saw a masked error, below, and
    tried 4 more rounds), and one that began between a transaction's reads and
    its commit for 2 minutes (commit, then rollback). Same requests as the
    library's, with the ledger's bound. A commit whose reply is lost in an
    outage may have been applied: the redelivery then finds the unit counted
    (``duplicate``) and finishes what follows the count.

    ``retry`` is the bound; the ledger passes its own ``RPC_RETRY`` at each
    transaction, so one setting bounds the reads and the transaction alike.
    """

    def __init__(self, client: Any, *, retry: Retry = RPC_RETRY, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._bound = retry

    def _begin(self, retry_id: bytes | None = None) -> None:
        if self.in_progress:
            raise ValueError(f"The transaction {self._id!r} has already begun.")
        response = self._client._firestore_api.begin_transaction(
            request={
                "database": self._client._database_string,
                "options": self._options_protobuf(retry_id),
            },
            metadata=self._client._rpc_metadata,
            retry=self._bound,
            timeout=RPC_TIMEOUT,
        )
        self._id = response.transaction

    def _commit(self) -> list[Any]:
        if not self.in_progress:
            raise ValueError("no transaction in progress to commit")
        response = self._client._firestore_api.commit(
            request={
                "database": self._client._database_string,
                "writes": self._write_pbs,
                "transaction": self._id,
            },
            metadata=self._client._rpc_metadata,
            # What the library retries on a commit (not INTERNAL), for our bound.
            retry=self._bound.with_predicate(_commit_retryable),
            timeout=RPC_TIMEOUT,
        )
        self._clean_up()
        self.write_results = list(response.write_results)
        self.commit_time = response.commit_time
        return self.write_results

    def _rollback(self) -> None:
        if not self.in_progress:
            raise ValueError("no transaction in progress to roll back")
        try:
            self._client._firestore_api.rollback(
                request={"database": self._client._database_string, "transaction": self._id},
                metadata=self._client._rpc_metadata,
                retry=self._bound,
                timeout=RPC_TIMEOUT,
            )
        finally:
            self._clean_up()  # the transaction is over either way


def _commit_retryable(exc: BaseException) -> bool:
    return isinstance(exc, gexc.ResourceExhausted | gexc.ServiceUnavailable)


def _outage(exc: BaseException) -> BaseException | None:
    """The outage behind a transaction's failure, if there is one.

    When ``_begin`` fails, the library's transactional wrapper tries to roll
    back a transaction that never began and raises *that* ValueError ("no
    transaction ID"): the RetryError / ServiceUnavailable is only its
    ``__context__``. Look through both links.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, gexc.RetryError | gexc.ServiceUnavailable | gexc.DeadlineExceeded):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None
