"""``python -m bench`` (``make bench``): how fast povstorm is against
rendering directly, each figure a ratio against a baseline run beside it in
the same run.

    overhead     the example animation rendered by ``povray`` in one process,
                 by one ``povray +WT1`` per frame per core, and through a warm
                 local stack (``bench.overhead``)
    latency      frame upload -> ledger record, last upload -> video ready,
                 read from the ledger after each farm run
    cold start   ``LocalStack.up()`` against the Firestore emulator alone
                 (``bench.coldstart``)
    ledger       ``Ledger.record_frame`` from 16 threads, 20 % duplicates,
                 against plain writes (``bench.ledger_load``)
    model        the cloud wall time of N frames on M instances, from the
                 constants measured here (``bench.scaling``)

Everything runs in a private POVSTORM_HOME in a temporary directory, and the
stack it starts is stopped before it exits. The method and the figures are
in docs/bench.md.
"""
