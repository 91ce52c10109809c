"""Fixtures for the Python end-to-end tests under `tests/` (the dashboard's have their own):
`tmp`, a scratch directory, and `agent`, a running `cairn agent -dev` as (HTTP base URL, DNS
port). A module's `agent_args` fixture adds flags."""

import shutil
import tempfile

import pytest

import cairn_agent


@pytest.fixture()
def tmp():
    path = tempfile.mkdtemp(prefix="cairn-e2e-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def agent_args():
    return []


@pytest.fixture()
def agent(tmp, agent_args):
    for _attempt in range(3):
        started = cairn_agent.start(tmp, agent_args)
        if started is not None:
            proc, base, dns = started
            try:
                yield base, dns
            finally:
                cairn_agent.stop(proc)
            return
    pytest.fail(f"the agent did not start:\n{cairn_agent.tail(tmp + '/agent.log')}")
