"""The farm: each event as a ledger transaction followed, after commit, by
its side effects (``operations.py``), and the reconciler that repairs what a
crash or a lost event left (``reconcile.py``)."""
