"""Resource names shared by the code and the terraform module.

Everything that names a topic, subscription, collection, object prefix or
environment variable is read from ``names.json`` beside this file; terraform
reads the same file with ``jsondecode(file(...))``, so the two cannot drift.
Cloud resources are namespaced as ``<namespace>-<name>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any


def _load() -> dict[str, Any]:
    return json.loads(resources.files("povstorm").joinpath("names.json").read_text())


NAMES: dict[str, Any] = _load()
TOPICS: dict[str, str] = NAMES["topics"]
SUBSCRIPTIONS: dict[str, str] = NAMES["subscriptions"]
COLLECTIONS: dict[str, str] = NAMES["collections"]
PREFIXES: dict[str, str] = NAMES["prefixes"]
ENV: dict[str, str] = NAMES["env"]
FUNCTIONS: dict[str, str] = NAMES["functions"]
DEFAULTS: dict[str, Any] = NAMES["defaults"]


@dataclass(frozen=True)
class Namespace:
    """Turns the logical names above into the names of real resources."""

    name: str = DEFAULTS["namespace"]

    def topic(self, key: str) -> str:
        return f"{self.name}-{TOPICS[key]}"

    def subscription(self, key: str) -> str:
        return f"{self.name}-{SUBSCRIPTIONS[key]}"
