"""Real-browser test of the dashboard's ACL token login.

Starts a `cairn agent -dev` whose config file turns ACLs on with `default_policy = "deny"` and
a known initial management token, registers a service with that token, and checks in
Chromium: without a token the "requires an ACL token" panel shows and no service name is
visible; a wrong token gets the agent's "ACL not found"; the right token shows the services
(and is kept in localStorage as `cairn:token`); "Log out" forgets it and hides them again.
It also checks the ACL pages: the management token sees its tokens, policies and roles; a token
without acl:read sees "permission denied" there while the rest of the dashboard works.
Runs like test_dashboard.py (see tests/ui/README.md).
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest
from playwright.sync_api import expect

from cairn_agent import free_ports, stop, ui_dir_args
from harness import CAIRN_BIN, LIVE, tail
from test_dashboard import browser  # noqa: F401 (a fixture)

MANAGEMENT = str(uuid.uuid4())
SERVICE = "acl-web-7f3a"  # a name that appears nowhere else on the page


def call(base, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def acl_agent():
    """A dev agent with ACLs on (deny by default); yields its base URL."""
    assert os.access(CAIRN_BIN, os.X_OK), f"cairn binary not found at {CAIRN_BIN} (set CAIRN_BIN)"
    tmp = tempfile.mkdtemp(prefix="cairn-ui-acl-")
    config = os.path.join(tmp, "acl.json")
    with open(config, "w") as f:
        json.dump({"acl": {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": MANAGEMENT}}}, f)
    data = os.path.join(tmp, "data")
    os.makedirs(data, mode=0o700)
    http, dns, server, serf = free_ports(4)
    log_path = os.path.join(tmp, "agent.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [CAIRN_BIN, "agent", "-dev", "-node=acl-ui-node", f"-data-dir={data}", f"-config-file={config}",
             f"-http-port={http}", f"-dns-port={dns}", f"-server-port={server}", f"-serf-lan-port={serf}", *ui_dir_args()],
            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"agent exited:\n{tail(log_path)}"
            try:
                status, text = call(base, "GET", "/v1/status/leader")
                if status == 200 and json.loads(text):
                    break
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, f"no leader within 30 s:\n{tail(log_path)}"
            time.sleep(0.2)
        # The anonymous token may not read the agent: that is what makes the page ask.
        status, _ = call(base, "GET", "/v1/agent/self")
        assert status == 403, f"agent/self without a token answered {status}, expected 403"
        status, text = call(base, "PUT", "/v1/agent/service/register", {"Name": SERVICE, "Port": 8080}, MANAGEMENT)
        assert status == 200, f"register -> {status} {text}"
        yield base
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def test_token_login_shows_services_and_logout_hides_them(acl_agent, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})  # empty localStorage
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(acl_agent + "/ui/#/services")
        login = page.get_by_test_id("login")
        expect(login).to_be_visible()
        expect(login).to_contain_text("This agent requires an ACL token")
        expect(page.get_by_text(SERVICE)).to_have_count(0)

        field = page.get_by_label("ACL token (SecretID)")
        field.fill(str(uuid.uuid4()))
        field.press("Enter")  # the keyboard submits the form
        expect(page.get_by_test_id("login-error")).to_contain_text("ACL not found")
        expect(page.get_by_text(SERVICE)).to_have_count(0)

        field.fill(MANAGEMENT)
        page.get_by_test_id("login-submit").click()
        expect(login).to_be_hidden()
        expect(page.locator(f'[data-service="{SERVICE}"]')).to_be_visible(timeout=LIVE)
        assert page.evaluate("localStorage.getItem('cairn:token')") == MANAGEMENT

        page.get_by_test_id("logout").click()
        expect(page.get_by_text(SERVICE)).to_have_count(0)
        expect(login).to_be_visible()
        assert page.evaluate("localStorage.getItem('cairn:token')") is None
        assert errors == [], errors
    finally:
        context.close()


def test_acl_pages_and_permission_denied(acl_agent, browser):
    # A policy that may read services and nodes but not ACLs, and a token for it.
    status, text = call(acl_agent, "PUT", "/v1/acl/policy", {"Name": "ui-reader", "Rules": 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\nagent_prefix "" { policy = "read" }'}, MANAGEMENT)
    assert status == 200, text
    status, text = call(acl_agent, "PUT", "/v1/acl/token", {"Description": "ui reader", "Policies": [{"Name": "ui-reader"}]}, MANAGEMENT)
    assert status == 200, text
    reader = json.loads(text)["SecretID"]

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    try:
        page.goto(acl_agent + "/ui/#/acls/tokens")
        page.evaluate("t => localStorage.setItem('cairn:token', t)", MANAGEMENT)
        page.reload()
        expect(page.get_by_test_id("acl-tokens")).to_contain_text("ui reader")
        page.get_by_test_id("acl-tab-policies").click()
        expect(page.get_by_test_id("acl-policies")).to_contain_text("ui-reader")
        expect(page).to_have_title("Policies · ACL · cairn")

        page.evaluate("t => localStorage.setItem('cairn:token', t)", reader)
        page.reload()
        expect(page.get_by_test_id("permission-denied")).to_contain_text("Permission denied")
        expect(page.get_by_test_id("login")).to_be_hidden()  # a known token: no login panel
        page.goto(acl_agent + "/ui/#/services")
        expect(page.locator(f'[data-service="{SERVICE}"]')).to_be_visible(timeout=LIVE)
    finally:
        context.close()
