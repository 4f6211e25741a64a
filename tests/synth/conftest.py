"""Fixtures for the synth tests: loopback OpenAI-compatible servers and tiny local models."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_helpers import LONG_QA_CHAINS, SELF_LENGTHEN_CHAINS, build_chain_model

from mixcraft.synth.loopback import LoopbackServer, ServerOptions, start_in_thread


@pytest.fixture(scope="session")
def self_lengthen_model(tmp_path_factory) -> Path:
    return build_chain_model(tmp_path_factory.mktemp("sl_model"), SELF_LENGTHEN_CHAINS)


@pytest.fixture(scope="session")
def long_qa_model(tmp_path_factory) -> Path:
    return build_chain_model(tmp_path_factory.mktemp("qa_model"), LONG_QA_CHAINS)


@pytest.fixture
def openai_server():
    """Start loopback OpenAI-compatible servers (mixcraft.synth.loopback) that record request
    bodies; `faults` are served first, one per POST."""
    servers = []

    def start(faults: list[str] | None = None, **opts) -> LoopbackServer:
        server, thread = start_in_thread(ServerOptions(faults=list(faults or []), record_bodies=True, **opts))
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.stop()
        thread.join(10)
