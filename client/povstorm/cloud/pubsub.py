"""The publisher: the namespace's Pub/Sub topics (the emulator locally), and
the one way a job's change of state is announced (``publish_job_event``)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from povstorm.core.errors import PovstormError, TransientError, translate
from povstorm.core.model import JobEvent
from povstorm.core.names import Namespace
from povstorm.core.schemas import encode_job_event

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, topic_key: str, data: bytes, **attributes: str) -> None: ...
    def publish_many(self, topic_key: str, payloads: list[bytes]) -> None: ...


def publish_job_event(publisher: Publisher, event: JobEvent) -> bool:
    """Announce a job's move on ``job_events``, after the commit that made it.

    Whoever moves a job calls this: submit, the end of rendering (a claim or
    fail-fast), the stitch, cancel, retry, the reconciler. The move is
    committed already, so a failed publish must not fail it: it is logged and
    False returned. The one event that matters, a job's end when it has a
    ``notify`` URL, is published again by the reconciler if no delivery
    followed (farm/reconcile.py). The state is an attribute too, so a
    subscription can filter on it."""
    try:
        publisher.publish(
            "job_events", encode_job_event(event), job_id=event.job_id, state=event.state.value
        )
    except PovstormError as exc:
        log.warning(
            "job %s is %s, but its event was not published: %s", event.job_id, event.state, exc
        )
        return False
    return True


# --- Pub/Sub -----------------------------------------------------------------


class PubSubPublisher:
    def __init__(self, client: Any, project: str, namespace: Namespace) -> None:
        self._client = client
        self._project = project
        self._ns = namespace

    def _path(self, topic_key: str) -> str:
        return self._client.topic_path(self._project, self._ns.topic(topic_key))

    def publish(self, topic_key: str, data: bytes, **attributes: str) -> None:
        self.publish_many(topic_key, [data], **attributes)

    def publish_many(self, topic_key: str, payloads: list[bytes], **attributes: str) -> None:
        """Publish and wait for every message id: a publish is a side effect
        that must be confirmed before the caller acknowledges its own event."""
        path = self._path(topic_key)
        futures = [self._client.publish(path, p, **attributes) for p in payloads]
        try:
            with translate():
                for f in futures:
                    f.result(timeout=60)
        except PovstormError:
            raise
        except Exception as exc:  # the publisher's own timeout and batch errors
            raise TransientError(f"publish to {path} failed: {exc}") from exc


def publisher_client(emulator_host: str = "") -> Any:
    """A publisher; with ``emulator_host``, one for the Pub/Sub emulator."""
    from google.cloud import pubsub_v1

    batching = pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.01)
    if emulator_host:
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        transport = PublisherGrpcTransport(channel=_insecure_channel(emulator_host))
        return pubsub_v1.PublisherClient(batch_settings=batching, transport=transport)
    return pubsub_v1.PublisherClient(batch_settings=batching)


def subscriber_client(emulator_host: str = "") -> Any:
    """A subscriber; with ``emulator_host``, one for the Pub/Sub emulator."""
    from google.cloud import pubsub_v1

    if emulator_host:
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        transport = SubscriberGrpcTransport(channel=_insecure_channel(emulator_host))
        return pubsub_v1.SubscriberClient(transport=transport)
    return pubsub_v1.SubscriberClient()


def _insecure_channel(host: str) -> Any:
    # The emulator speaks plain gRPC; the libraries build this channel only
    # when PUBSUB_EMULATOR_HOST is in os.environ, so it is built here instead.
    import grpc

    return grpc.insecure_channel(host)
