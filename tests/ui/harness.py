"""What the dashboard's browser tests share: real agents (a `-dev` agent on free ports, or a
3-server cluster on distinct loopback addresses), a tiny HTTP client, Debian's chromium through
Python Playwright, axe-core for the accessibility check, and the artifacts directory.

Environment: CAIRN_BIN (agent binary), CAIRN_UI_DIR (serve web-ui/ from this directory with
`-ui-dir`; needed for a prebuilt binary), CHROMIUM, CAIRN_UI_ARTIFACTS (screenshots),
CAIRN_UI_NODE (where `npm install axe-core` put node_modules).
"""

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

from cairn_agent import free_port_on, free_ports, stop, ui_dir_args

CAIRN_BIN = os.environ.get("CAIRN_BIN", "/root/.cache/cairn-target/debug/cairn")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.environ.get("CAIRN_UI_ARTIFACTS", "/tmp/cairn-ui-artifacts")
AXE = os.path.join(os.environ.get("CAIRN_UI_NODE", os.path.expanduser("~/.cache/cairn-ui-node")), "node_modules/axe-core/axe.min.js")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LIVE = 10_000  # ms allowed for a change to arrive through a blocking query


class Api:
    """Tiny HTTP client for one agent."""

    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, token=None):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            req.add_header("X-Consul-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, res.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def ok(self, method, path, body=None):
        status, raw = self.call(method, path, body)
        assert status == 200, f"{method} {path} -> {status} {raw[:300]!r}"
        return raw.decode(errors="replace")

    def raw(self, path):
        status, raw = self.call("GET", path)
        assert status == 200, f"GET {path} -> {status}"
        return raw

    def json(self, path):
        return json.loads(self.ok("GET", path))


def kv_path(key):
    return "/v1/kv/" + urllib.parse.quote(key, safe="/")


def tail(path, n=2000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


# ---- one dev agent ------------------------------------------------------------------------

def _spawn_dev(node, tmp, ports, extra):
    http, dns, server, serf = ports
    data = os.path.join(tmp, f"data-{node}")
    os.makedirs(data, mode=0o700, exist_ok=True)
    log_path = os.path.join(tmp, "agent.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [CAIRN_BIN, "agent", "-dev", f"-node={node}", f"-data-dir={data}", f"-http-port={http}", f"-dns-port={dns}",
             f"-server-port={server}", f"-serf-lan-port={serf}", *ui_dir_args(), *extra],
            stdout=log, stderr=subprocess.STDOUT)
    return proc, log_path


def _up(api, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            status, raw = api.call("GET", "/v1/status/leader")
            if status == 200 and json.loads(raw):
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def running_agent(node, extra=()):
    """A `cairn agent -dev` on free ports, up once it reports a leader; stopped on exit. The
    Api has `.restart()` (same ports, a fresh dev agent) and `.server_port`."""
    assert os.access(CAIRN_BIN, os.X_OK), f"cairn binary not found at {CAIRN_BIN} (set CAIRN_BIN)"
    tmp = tempfile.mkdtemp(prefix="cairn-ui-")
    api = None
    try:
        for _ in range(3):
            ports = free_ports(4)
            proc, log_path = _spawn_dev(node, tmp, ports, list(extra))
            candidate = Api(f"http://127.0.0.1:{ports[0]}")
            if _up(candidate, proc):
                api = candidate
                break
            stop(proc)
        if api is None:
            pytest.fail(f"agent failed to start 3 times:\n{tail(os.path.join(tmp, 'agent.log'))}")
        api.proc, api.log_path, api.server_port, api.tmp = proc, log_path, ports[2], tmp

        def restart():
            stop(api.proc)
            shutil.rmtree(os.path.join(tmp, f"data-{node}"), ignore_errors=True)
            api.proc, _ = _spawn_dev(node, tmp, ports, list(extra))
            assert _up(api, api.proc), f"agent did not come back:\n{tail(log_path)}"
        api.restart = restart
        yield api
    finally:
        if api:
            stop(api.proc)
        shutil.rmtree(tmp, ignore_errors=True)


# ---- a 3-server cluster ---------------------------------------------------------------------

CLUSTER_CONFIG = """\
raft.heartbeat_interval = "50ms"
raft.election_timeout_min = "400ms"
raft.election_timeout_max = "800ms"
autopilot.server_stabilization_time = "1s"
retry_interval = "1s"
"""


class Cluster:
    """Three servers (`-server -bootstrap-expect=3`) on distinct 127.x.y.z addresses, every one
    retry-joining the others, as tests/it/cluster_util.rs starts them."""

    def __init__(self, size=3):
        self.dir = tempfile.mkdtemp(prefix="cairn-ui-cluster-")
        with open(os.path.join(self.dir, "test.toml"), "w") as f:
            f.write(CLUSTER_CONFIG)
        self.servers = []
        for i in range(size):
            ip = f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(2, 254)}"
            ports = []
            while len(ports) < 4:
                p = free_port_on(ip)
                if p not in ports:
                    ports.append(p)
            self.servers.append({"name": f"s{i + 1}", "ip": ip, "http": ports[0], "server": ports[1], "dns": ports[2], "serf": ports[3], "proc": None})
        for i in range(size):
            self.spawn(i)

    def api(self, i):
        s = self.servers[i]
        return Api(f"http://{s['ip']}:{s['http']}")

    def spawn(self, i):
        s = self.servers[i]
        args = [CAIRN_BIN, "agent", "-server", f"-bootstrap-expect={len(self.servers)}", f"-node={s['name']}",
                f"-data-dir={self.dir}/{s['name']}", f"-bind={s['ip']}", f"-client={s['ip']}", f"-advertise={s['ip']}",
                f"-http-port={s['http']}", f"-dns-port={s['dns']}", f"-server-port={s['server']}", f"-serf-lan-port={s['serf']}",
                f"-config-file={self.dir}/test.toml", *ui_dir_args()]
        args += [f"-retry-join={o['ip']}:{o['serf']}" for o in self.servers if o is not s]
        log = open(os.path.join(self.dir, f"{s['name']}.log"), "ab")
        s["proc"] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def leader(self, among=None):
        """Index of the server every asked server names as leader, or None."""
        names = set()
        for i in among if among is not None else range(len(self.servers)):
            try:
                status, raw = self.api(i).call("GET", "/v1/status/leader")
                names.add(json.loads(raw) if status == 200 else "")
            except (OSError, ValueError):
                names.add("")
        if len(names) != 1 or "" in names:
            return None
        addr = names.pop()
        return next((i for i, s in enumerate(self.servers) if addr == f"{s['ip']}:{s['server']}"), None)

    def kill9(self, i):
        s = self.servers[i]
        os.kill(s["proc"].pid, signal.SIGKILL)
        s["proc"].wait()

    def logs(self):
        return "\n".join(f"--- {s['name']}\n{tail(os.path.join(self.dir, s['name'] + '.log'))}" for s in self.servers)

    def close(self):
        for s in self.servers:
            if s["proc"] is not None:
                stop(s["proc"])
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the browser ----------------------------------------------------------------------------

@contextlib.contextmanager
def chromium():
    assert os.access(CHROMIUM, os.X_OK), f"chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    pw = sync_playwright().start()
    # Playwright gives every launch a fresh temporary profile (it refuses --user-data-dir).
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()
        pw.stop()


def watch_page(page):
    """Record uncaught JS errors and requests on `page` (as page.errors / page.requests)."""
    page.errors = []
    page.requests = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: page.requests.append(r.url))
    return page


def hub_stats(page):
    """The shared hub's request counters (the SharedWorker's requests are not the page's)."""
    return page.evaluate("() => window.__cairn.live.stats()")


def axe_violations(page, impacts=("serious", "critical")):
    """Run axe-core (WCAG 2 A/AA rules) in the page; returns the violations of these impacts."""
    assert os.path.exists(AXE), f"axe-core not found at {AXE}: npm install axe-core into $CAIRN_UI_NODE (see tests/ui/README.md)"
    page.add_script_tag(path=AXE)
    result = page.evaluate("""async () => {
        const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
        return r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' :: ' + n.failureSummary) }));
    }""")
    return [v for v in result if v["impact"] in impacts]


def artifact(name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    return os.path.join(ARTIFACTS, name)
