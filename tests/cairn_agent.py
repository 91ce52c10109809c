"""What the Python end-to-end tests outside the dashboard share (`tests/haproxy`, `tests/dns`):
a real `cairn agent -dev` on free loopback ports, and a small HTTP client for it.

`tests/conftest.py` turns `start` into the `agent` fixture; a test module may define an
`agent_args` fixture to pass more flags.
"""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

CAIRN_BIN = os.environ.get("CAIRN_BIN", "/root/.cache/cairn-target/debug/cairn")
# A prebuilt (release) binary carries its own copy of web-ui/; CAIRN_UI_DIR makes it serve the
# files of this checkout instead (`-ui-dir`). A debug build reads web-ui/ from disk anyway.
CAIRN_UI_DIR = os.environ.get("CAIRN_UI_DIR", "")


def ui_dir_args():
    """`-ui-dir <dir>` when CAIRN_UI_DIR is set, else nothing."""
    return ["-ui-dir", CAIRN_UI_DIR] if CAIRN_UI_DIR else []
# How long an agent may take to start and elect itself.
START_S = 30


# Ports tried before giving up on one free for both TCP and UDP.
PORT_PAIR_TRIES = 100


def bound_pair(host="127.0.0.1"):
    """(tcp, udp, port): a TCP and a UDP socket bound to one port on `host`, free for both
    (the DNS port needs both). A port whose UDP twin is taken (a client's ephemeral port, say)
    is skipped."""
    for _ in range(PORT_PAIR_TRIES):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind((host, 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
            return tcp, udp, port
        except OSError:
            tcp.close()
            udp.close()
    raise OSError(f"no port on {host} was free for both TCP and UDP")


def free_port_on(host):
    """One port free on `host` for both TCP and UDP."""
    tcp, udp, port = bound_pair(host)
    tcp.close()
    udp.close()
    return port


def free_ports(n):
    """n distinct ports free on 127.0.0.1 for both TCP and UDP."""
    held, ports = [], []
    while len(ports) < n:
        tcp, udp, port = bound_pair()
        held += [tcp, udp]
        ports.append(port)
    for s in held:
        s.close()
    return ports


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def ok(base, method, path, body=None):
    status, text = call(base, method, path, body)
    assert status == 200, f"{method} {path} -> {status} {text}"
    return text


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path, n=3000):
    with open(path, errors="replace") as f:
        return f.read()[-n:]


def start(tmp, extra_args):
    """Starts an agent; returns (process, HTTP base URL, DNS port), or None when it did not
    come up (a port taken between picking and binding it: the caller tries again)."""
    http, dns, server, serf = free_ports(4)
    log_path = os.path.join(tmp, "agent.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [CAIRN_BIN, "agent", "-dev", "-node=web-host", f"-data-dir={tmp}/data-{http}",
             f"-http-port={http}", f"-dns-port={dns}", f"-server-port={server}", f"-serf-lan-port={serf}", *ui_dir_args(), *extra_args],
            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + START_S
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            status, text = call(base, "GET", "/v1/status/leader")
            if status == 200 and json.loads(text):
                return proc, base, dns
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    stop(proc)
    return None
