"""A real SRV consumer against cairn's DNS (issue 12): HAProxy (Debian's package) with
`server-template ... _<service>._tcp.service.consul resolvers ...` pointed at a real
`cairn agent -dev`.

HAProxy fills its server slots from the SRV answer, taking each target's address from the
A records in the additional section. The checks: HAProxy holds every instance, three on one
node (same target, three ports: one glue record per SRV record) and one on each of three
nodes; it drops an instance when it is deregistered or turns critical, and takes it back
when it returns. What HAProxy holds is read from its runtime API (`show servers state`).

Run: `python -m pytest -q tests/haproxy` (`.ci/run` does, with the binary in $CAIRN_BIN).
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

from cairn_agent import free_ports, ok, stop, tail

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
# How long HAProxy may take to follow a change: it re-resolves every second (`hold valid
# 1s`), and cairn's SRV answers have TTL 0.
FOLLOW_S = 20
SLOTS = 5


@pytest.fixture()
def haproxy(tmp, agent):
    """HAProxy with one `server-template` backend per service (`web`, `api`), resolving
    through the agent's DNS. Yields a function that returns the (address, port) pairs a
    backend holds."""
    _base, dns = agent
    sock = os.path.join(tmp, "haproxy.sock")
    (front,) = free_ports(1)
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"""
global
    stats socket {sock} mode 600 level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s

resolvers cairn
    nameserver cairn 127.0.0.1:{dns}
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 500ms
    timeout retry 500ms
    hold valid 1s
    hold obsolete 0s
    hold nx 1s

frontend fe
    bind 127.0.0.1:{front}
    default_backend web

backend web
    server-template web {SLOTS} _web._tcp.service.consul resolvers cairn resolve-prefer ipv4 init-addr none

backend api
    server-template api {SLOTS} _api._tcp.service.consul resolvers cairn resolve-prefer ipv4 init-addr none
""")
    check = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True)
    assert check.returncode == 0, f"haproxy refused its config:\n{check.stdout}{check.stderr}"
    log_path = os.path.join(tmp, "haproxy.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        assert proc.poll() is None, f"haproxy exited:\n{tail(log_path)}"
        assert time.monotonic() < deadline, f"haproxy's runtime socket never appeared:\n{tail(log_path)}"
        time.sleep(0.1)

    def held(backend):
        return servers_held(sock, backend)

    held.log_path = log_path
    try:
        yield held
    finally:
        stop(proc)


def runtime_api(sock, command):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(sock)
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


# `srv_admin_state` bit for "in maintenance because resolution gave it no address".
SRV_ADMF_RMAINT = 0x08


def servers_held(sock, backend):
    """The (address, port) of every slot of `backend` that HAProxy filled from DNS."""
    text = runtime_api(sock, f"show servers state {backend}")
    lines = [l for l in text.splitlines() if l.strip()]
    header = next(l for l in lines if l.startswith("# be_id"))
    columns = header[2:].split()
    held = set()
    for line in lines:
        # The first line is the format version ("1"), then a header, then one row per slot.
        if line.startswith("#") or len(line.split()) != len(columns):
            continue
        row = dict(zip(columns, line.split()))
        if int(row["srv_admin_state"]) & SRV_ADMF_RMAINT or row["srv_addr"] in ("0.0.0.0", "-"):
            continue
        held.add((row["srv_addr"], int(row["srv_port"])))
    return held


def wait_for(held, backend, expected, what):
    deadline = time.monotonic() + FOLLOW_S
    seen = None
    while time.monotonic() < deadline:
        seen = held(backend)
        if seen == expected:
            return
        time.sleep(0.25)
    pytest.fail(f"{what}: HAProxy's {backend} holds {sorted(seen)}, expected {sorted(expected)}\n{tail(held.log_path)}")


def test_haproxy_holds_every_instance_on_one_node_and_follows_changes(agent, haproxy):
    base, _dns = agent
    ports = [8101, 8102, 8103]
    for n, port in enumerate(ports, 1):
        ok(base, "PUT", "/v1/agent/service/register",
           {"ID": f"web-{n}", "Name": "web", "Port": port, "Check": {"TTL": "10m", "Status": "passing"}})
    everyone = {("127.0.0.1", p) for p in ports}
    wait_for(haproxy, "web", everyone, "three instances on one node")

    ok(base, "PUT", "/v1/agent/service/deregister/web-2")
    wait_for(haproxy, "web", everyone - {("127.0.0.1", 8102)}, "web-2 deregistered")
    ok(base, "PUT", "/v1/agent/service/register",
       {"ID": "web-2", "Name": "web", "Port": 8102, "Check": {"TTL": "10m", "Status": "passing"}})
    wait_for(haproxy, "web", everyone, "web-2 registered again")

    ok(base, "PUT", "/v1/agent/check/fail/service:web-3")
    wait_for(haproxy, "web", everyone - {("127.0.0.1", 8103)}, "web-3 critical")
    ok(base, "PUT", "/v1/agent/check/pass/service:web-3")
    wait_for(haproxy, "web", everyone, "web-3 passing again")


def test_haproxy_holds_one_instance_on_each_of_three_nodes_and_follows_changes(agent, haproxy):
    base, _dns = agent

    def register(n, status):
        ok(base, "PUT", "/v1/catalog/register", {
            "Node": f"api-node-{n}", "Address": f"127.0.0.{20 + n}",
            "Service": {"ID": "api", "Service": "api", "Port": 9000},
            "Check": {"CheckID": "api-check", "Name": "api", "ServiceID": "api", "Status": status},
        })

    for n in (1, 2, 3):
        register(n, "passing")
    everyone = {(f"127.0.0.{20 + n}", 9000) for n in (1, 2, 3)}
    wait_for(haproxy, "api", everyone, "one instance on each of three nodes")

    ok(base, "PUT", "/v1/catalog/deregister", {"Node": "api-node-2", "ServiceID": "api"})
    wait_for(haproxy, "api", everyone - {("127.0.0.22", 9000)}, "api on node 2 deregistered")
    register(2, "passing")
    wait_for(haproxy, "api", everyone, "api on node 2 registered again")

    register(3, "critical")
    wait_for(haproxy, "api", everyone - {("127.0.0.23", 9000)}, "api on node 3 critical")
    register(3, "passing")
    wait_for(haproxy, "api", everyone, "api on node 3 passing again")
