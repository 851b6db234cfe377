"""The Google Cloud list prices that povstorm's cost figures come from: one
table, with the date it was read and where, in one place. ``core/cost.py``
applies it; nothing else holds a price.

Read on 2026-11-30 for us-central1, which is a tier 1 region of Cloud Run, in
USD. These are list prices with **no free tier deducted**: a free tier is
counted per billing account and per month over everything the account runs,
so one job cannot know how much of it is left. A small job may therefore
cost less on the bill than shown here, never more (at these prices).

Sources, as read that day:

* https://cloud.google.com/run/pricing: jobs (and services with instance-based
  billing) $0.000018 a vCPU-second and $0.000002 a GiB-second, no request
  fee, billed in 100 ms steps (free tier 240,000 vCPU-s and 450,000 GiB-s a
  month); request-based billing, which Cloud Run functions (2nd gen) use,
  $0.000024 a vCPU-second, $0.0000025 a GiB-second and $0.40 a million
  requests (free tier 180,000 vCPU-s, 360,000 GiB-s, 2 million requests).
* https://cloud.google.com/storage/pricing: Standard storage in us-central1
  $0.020 a GiB-month; class A operations (writes, copies, listings) $0.005 a
  thousand, class B (reads, metadata) $0.0004 a thousand.
* https://cloud.google.com/firestore/pricing: us-central1, $0.03 a hundred
  thousand document reads, $0.09 a hundred thousand writes (free 50,000
  reads and 20,000 writes a day). An aggregation query is billed as one read
  per thousand index entries it scans.

The page copies read that day cut Cloud Run's table off after the jobs'
vCPU price: the jobs' $0.000002 a GiB-second is the figure docs/deploy.md
has used and third-party summaries give, not read from Google's page. Check
the pages before relying on a figure; change it here, and the date.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PriceTable:
    """List prices in ``currency`` for one region, each per unit named."""

    date: str  # when these were read from the sources above
    currency: str
    region: str
    sources: tuple[str, ...]
    # Cloud Run jobs: a task's allocated vCPU and memory, for its whole life.
    run_vcpu_second: float
    run_gib_second: float
    # Cloud Run functions (request-based billing): the frame_finalized function.
    function_vcpu_second: float
    function_gib_second: float
    function_request: float
    # Cloud Storage, Standard class, regional bucket.
    storage_gib_month: float
    storage_class_a: float  # one write, copy or listing
    storage_class_b: float  # one read
    # Firestore (native mode), regional database.
    firestore_read: float
    firestore_write: float


PRICES = PriceTable(
    date="2026-11-30",
    currency="USD",
    region="us-central1 (Cloud Run tier 1)",
    sources=(
        "https://cloud.google.com/run/pricing",
        "https://cloud.google.com/storage/pricing",
        "https://cloud.google.com/firestore/pricing",
    ),
    run_vcpu_second=0.000018,
    run_gib_second=0.000002,
    function_vcpu_second=0.000024,
    function_gib_second=0.0000025,
    function_request=0.40 / 1_000_000,
    storage_gib_month=0.020,
    storage_class_a=0.005 / 1_000,
    storage_class_b=0.0004 / 1_000,
    firestore_read=0.03 / 100_000,
    firestore_write=0.09 / 100_000,
)
