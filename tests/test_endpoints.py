"""Clients get their endpoints as arguments, and the library never writes
os.environ: Settings reads the emulators' variables once at the edge, the
client factories take them explicitly, and a cloud cluster refuses a stray
emulator variable (which the client libraries would read themselves) with
one line instead of deleting it. No stack needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from povstorm.client import Cluster
from povstorm.cloud.clients import firestore_client
from povstorm.core.errors import UserError
from povstorm.core.settings import EMULATOR_VARS, Endpoints, Settings

OUTPUTS = {"project": "p", "bucket": "b", "submit_url": "https://submit.example"}


def test_settings_read_the_emulator_endpoints_once_and_hand_them_on() -> None:
    env = {
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:1",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:2",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:3",
    }
    settings = Settings.from_env(env)
    assert settings.endpoints == Endpoints("127.0.0.1:1", "127.0.0.1:2", "http://127.0.0.1:3")
    assert {k: settings.to_env()[k] for k in EMULATOR_VARS} == env
    assert not set(EMULATOR_VARS) & set(Settings.from_env({}).to_env())


def test_a_firestore_client_for_an_emulator_leaves_os_environ_alone() -> None:
    before = dict(os.environ)
    client = firestore_client("proj", "127.0.0.1:9")
    assert client._emulator_host == "127.0.0.1:9"
    assert dict(os.environ) == before


def test_a_cloud_cluster_refuses_a_stray_emulator_variable_and_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    with pytest.raises(UserError, match="FIRESTORE_EMULATOR_HOST set in the environment"):
        Cluster.from_terraform(OUTPUTS)
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == "127.0.0.1:9"


def test_the_cli_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text('{"project": "p", "bucket": "b", "submit_url": "https://x.example"}')
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}
    proc = subprocess.run(
        [sys.executable, "-m", "povstorm.client.cli", "jobs", "--cluster", str(outputs)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "povstorm: error: PUBSUB_EMULATOR_HOST set in the environment would point the clients "
        "at an emulator: unset it to use a cloud cluster"
    ]
