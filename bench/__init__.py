"""``python -m bench`` (``make bench``): how fast povstorm is against the
limit and against rendering directly, each figure a ratio against a baseline
run beside it in the same run.

    overhead     the example animation at each size (320x240 and 1280x960 by
                 default) rendered by ``povray`` in one process (a), by one
                 ``povray +WT1`` per frame per core (b), and through a warm
                 local stack with the worker count it chooses (c), against
                 the limit: (b)'s POV-Ray CPU seconds / cores
                 (``bench.overhead``)
    latency      frame upload -> ledger record, last upload -> video ready,
                 read from the ledger after each farm run
    cold start   ``LocalStack.up()`` against the Firestore emulator alone
                 (``bench.coldstart``)
    ledger       ``Ledger.record_frame`` from 16 threads, 20 % duplicates,
                 against plain writes (``bench.ledger_load``)
    fill         K ``povray`` processes on contiguous chunks of frames (equal
                 or guided) against the limit: how many processes per core
                 fill the cores (``bench.fill``; ``python -m bench.fill``)
    segments     joining the segments of a 10,000-frame video against one
                 encode of its frames, when ``bench/segments.py`` exists
    model        a discrete-event simulation of the pull-task design
                 (``bench.model``): checked against local runs on fresh stacks
                 it did not come from (``bench.validate``), then the cloud
                 table of N frames on M Cloud Run Job tasks from GCP's
                 documented figures and the constants measured here
                 (``bench.cloud``, ``bench.constants``)

Everything runs in a private POVSTORM_HOME in a temporary directory, and the
stack it starts is stopped before it exits. The method and the figures are
in docs/bench.md.
"""
