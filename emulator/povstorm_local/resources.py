"""The wiring of the local stack: the bucket, the topics and the subscriptions
that terraform creates in the cloud, created here on the emulators.

    work              PULL  -> render tasks (dead letters -> work_dead_letter)
    frame_events      PUSH  -> fn frame_finalized   (GCS OBJECT_FINALIZE notifications)
    failures          PUSH  -> fn frame_failed
    work_dead_letter  PUSH  -> fn frame_failed
    job_events        PUSH  -> fn job_event         (job state changes; notifications)

The clients are built against explicit endpoints rather than through the
*_EMULATOR_HOST variables: ``povstorm local up`` must not change the
environment of the process that calls it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from povstorm.core.names import DEFAULTS, TOPICS, Namespace

# The work subscription is pulled one message at a time by a worker, which
# extends the deadline while POV-Ray runs; 20 s bounds how long a crashed
# worker holds a unit before Pub/Sub redelivers it.
WORK_ACK_DEADLINE = 20
# A push is an HTTP call to a function that only records a fact in Firestore.
PUSH_ACK_DEADLINE = 60
# Which push subscription goes to which function (keys of names.json).
PUSH_TARGETS = {
    "frame_events": "frame_finalized",
    "failures": "frame_failed",
    "work_dead_letter": "frame_failed",
    "job_events": "job_event",
}


def push_endpoint(function_url: str, project: str, topic: str) -> str:
    """The topic in the path lets functions-framework name the CloudEvent's
    source ``//pubsub.googleapis.com/projects/P/topics/T``, as Eventarc does."""
    return f"{function_url.rstrip('/')}/projects/{project}/topics/{topic}"


@dataclass
class Admin:
    """Administrative clients bound to one stack's emulators."""

    project: str
    namespace: Namespace
    storage: Any
    publisher: Any
    subscriber: Any
    channel: Any

    @classmethod
    def connect(cls, project: str, namespace: str, pubsub_host: str, gcs_url: str) -> Admin:
        import grpc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        from google.pubsub_v1 import PublisherClient, SubscriberClient
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        channel = grpc.insecure_channel(pubsub_host)
        return cls(
            project=project,
            namespace=Namespace(namespace),
            storage=storage.Client(
                project=project,
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": gcs_url},
            ),
            publisher=PublisherClient(transport=PublisherGrpcTransport(channel=channel)),
            subscriber=SubscriberClient(transport=SubscriberGrpcTransport(channel=channel)),
            channel=channel,
        )

    def close(self) -> None:
        self.channel.close()

    def topic_path(self, key: str) -> str:
        return f"projects/{self.project}/topics/{self.namespace.topic(key)}"

    def subscription_path(self, key: str) -> str:
        return f"projects/{self.project}/subscriptions/{self.namespace.subscription(key)}"

    def ensure_bucket(self, bucket: str) -> None:
        from google.api_core import exceptions as gexc

        # fake-gcs-server keeps its data on disk, so the bucket may survive a restart.
        with contextlib.suppress(gexc.Conflict):
            self.storage.create_bucket(bucket)

    def ensure_topics(self) -> None:
        from google.api_core import exceptions as gexc

        for key in TOPICS:
            with contextlib.suppress(gexc.AlreadyExists):
                self.publisher.create_topic(name=self.topic_path(key))

    def ensure_work_subscription(self) -> None:
        """A pull subscription whose repeatedly undelivered messages go to the
        dead-letter topic (the Pub/Sub emulator honours dead-letter policies)."""
        self._create(
            {
                "name": self.subscription_path("work"),
                "topic": self.topic_path("work"),
                "ack_deadline_seconds": WORK_ACK_DEADLINE,
                "dead_letter_policy": {
                    "dead_letter_topic": self.topic_path("work_dead_letter"),
                    "max_delivery_attempts": DEFAULTS["max_delivery_attempts"],
                },
            }
        )

    def ensure_push_subscriptions(self, function_urls: dict[str, str]) -> None:
        """The push subscriptions of the functions in ``function_urls`` (a
        harness may serve only some of them: the fault tests serve two)."""
        for key, function in PUSH_TARGETS.items():
            if function not in function_urls:
                continue
            topic = self.namespace.topic(key)
            self._create(
                {
                    "name": self.subscription_path(key),
                    "topic": self.topic_path(key),
                    "ack_deadline_seconds": PUSH_ACK_DEADLINE,
                    "push_config": {
                        "push_endpoint": push_endpoint(function_urls[function], self.project, topic)
                    },
                    # Back off on a 5xx (contention, a notification's receiver
                    # that did not accept) instead of redelivering at once.
                    "retry_policy": {
                        "minimum_backoff": {"seconds": 1},
                        "maximum_backoff": {"seconds": 30},
                    },
                }
            )

    def _create(self, request: dict[str, Any]) -> None:
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.AlreadyExists):
            self.subscriber.create_subscription(request=request)
