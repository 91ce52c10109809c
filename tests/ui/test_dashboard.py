"""Real-browser test of the cairn web dashboard (/ui/).

Starts a real `cairn agent -dev` on free ports, drives Debian's chromium through Python
Playwright, and checks what a person would see: the header's node and Raft role, services
appearing and changing health without a reload (blocking queries, a TTL lapse), the nodes list,
KV create/edit/delete through the UI (verified over the HTTP API), that hostile names and values
are shown as text, and that the connection state tells the truth when the agent restarts.
See tests/ui/README.md for how to run it.
"""

import re
import time
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect

from harness import LIVE, artifact, chromium, hub_stats, kv_path, running_agent, watch_page

expect.set_options(timeout=LIVE)


# ---- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent():
    with running_agent("ui-node") as api:
        yield api


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def page(agent, browser):
    """One page for the whole module; records uncaught JS errors and every API request."""
    pg = watch_page(browser.new_page(viewport={"width": 1280, "height": 860}))
    yield pg
    pg.close()


def row(page, attr, value):
    return page.locator(f'[{attr}="{value}"]')


# ---- tests -------------------------------------------------------------------------------

def test_root_redirects_to_dashboard(agent):
    with urllib.request.urlopen(agent.base + "/", timeout=10) as res:
        assert res.url.endswith("/ui/")
        assert 'src="/ui/app.js"' in res.read().decode()


def test_header_shows_node_and_raft_leader(agent, page):
    page.goto(agent.base + "/ui/")
    expect(page.get_by_test_id("node-name")).to_have_text("ui-node")
    expect(page.get_by_test_id("datacenter")).to_have_text("dc1")
    expect(page.get_by_test_id("raft-role")).to_have_text("leader")
    expect(page.get_by_test_id("raft-term")).to_have_text(re.compile(r"^\d+$"))
    expect(page.get_by_test_id("raft-leader")).to_have_text(f"127.0.0.1:{agent.server_port}")
    expect(page.get_by_test_id("raft-peers")).to_contain_text(f"127.0.0.1:{agent.server_port}")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
    # The default route is the overview.
    assert page.url.endswith("#/overview")

    # The Raft numbers follow writes (agent/self is polled every 2 s).
    applied = page.get_by_test_id("raft-applied-index")
    expect(applied).to_have_text(re.compile(r"^\d+$"))
    before = int(applied.text_content())
    agent.ok("PUT", "/v1/kv/ui-test/tick", "1")
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=raft-applied-index]').textContent) > n",
        arg=before, timeout=LIVE)


def test_services_update_live_without_reload(agent, page):
    page.goto(agent.base + "/ui/#/services")
    expect(row(page, "data-service", "consul")).to_be_visible()
    expect(row(page, "data-service", "web")).to_have_count(0)
    page.evaluate("window.__noReload = 'still here'")

    hostile_tag = "<img src=x onerror=window.__xss='tag'>"
    agent.ok("PUT", "/v1/agent/service/register", {
        "Name": "web", "Port": 8080, "Tags": ["v1", hostile_tag],
        "Check": {"TTL": "30s", "Status": "passing"}})

    web = row(page, "data-service", "web")
    expect(web).to_be_visible()
    expect(web.get_by_test_id("health-badge")).to_have_attribute("data-status", "passing")
    expect(web.get_by_test_id("health-badge")).to_have_text("passing")
    expect(web.get_by_test_id("instance-count")).to_have_text("1")
    expect(web).to_contain_text(hostile_tag)  # the tag is shown as text ...
    assert web.locator("img").count() == 0  # ... and made no element

    agent.ok("PUT", "/v1/agent/check/fail/service:web?note=" + urllib.parse.quote("disk full"))
    expect(web.get_by_test_id("health-badge")).to_have_attribute("data-status", "critical")
    expect(web.get_by_test_id("health-badge")).to_have_text("critical")

    # Neither change needed a reload: the marker survives, and the page used blocking queries
    # (made by the shared hub, in the SharedWorker, so they are counted there).
    assert page.evaluate("window.__noReload") == "still here"
    assert hub_stats(page)["blocking"] > 0

    page.screenshot(path=artifact("services.png"), full_page=True)

    # The service page lists the instance with its checks.
    web.get_by_role("link", name="web").click()
    expect(page).to_have_url(re.compile(r"#/services/web$"))
    inst = row(page, "data-instance", "web")
    expect(inst).to_be_visible()
    check = inst.locator('[data-check="service:web"]')
    expect(check.get_by_test_id("health-badge")).to_have_attribute("data-status", "critical")
    expect(check).to_contain_text("disk full")
    expect(inst.locator('[data-check="serfHealth"]').get_by_test_id("health-badge")).to_have_attribute("data-status", "passing")

    # ... and follows the check back to passing, still without a reload.
    agent.ok("PUT", "/v1/agent/check/pass/service:web")
    expect(check.get_by_test_id("health-badge")).to_have_attribute("data-status", "passing")
    assert page.evaluate("window.__noReload") == "still here"


def test_ttl_lapse_flips_health_without_reload(agent, page):
    page.goto(agent.base + "/ui/#/services")
    agent.ok("PUT", "/v1/agent/service/register", {"Name": "lapse", "Port": 9, "Check": {"TTL": "3s", "Status": "passing"}})
    lapse = row(page, "data-service", "lapse")
    expect(lapse.get_by_test_id("health-badge")).to_have_attribute("data-status", "passing")
    page.evaluate("window.__noReload = 'lapse'")
    # Nobody renews the TTL: the agent marks the check critical, and the list follows.
    expect(lapse.get_by_test_id("health-badge")).to_have_attribute("data-status", "critical", timeout=LIVE + 3000)
    assert page.evaluate("window.__noReload") == "lapse"
    agent.ok("PUT", "/v1/agent/service/deregister/lapse")
    expect(lapse).to_have_count(0)


def test_nodes_tab_lists_agent_node(agent, page):
    page.goto(agent.base + "/ui/")
    page.get_by_test_id("tab-nodes").click()
    node = row(page, "data-node", "ui-node")
    expect(node).to_be_visible()
    expect(node).to_contain_text("127.0.0.1")
    expect(node.get_by_test_id("health-badge")).to_have_attribute("data-status", "passing")
    expect(page.get_by_test_id("tab-nodes")).to_have_class(re.compile(r"\bactive\b"))
    node.get_by_role("link").click()
    expect(page.get_by_test_id("checks-table").locator('[data-check="serfHealth"]')).to_contain_text("Serf Health Status")
    expect(page.get_by_test_id("node-facts")).to_contain_text("dc1")


def test_kv_create_edit_delete_through_ui(agent, page):
    page.goto(agent.base + "/ui/")
    page.get_by_test_id("tab-kv").click()
    expect(page).to_have_url(re.compile(r"#/kv/$"))

    # Create.
    page.get_by_test_id("kv-new-key").fill("app/greeting")
    page.get_by_test_id("kv-new-value").fill("hello")
    page.get_by_test_id("kv-create").click()
    expect(page.get_by_test_id("kv-form-message")).to_contain_text("Created")
    assert agent.ok("GET", "/v1/kv/app/greeting?raw") == "hello"

    # The new folder shows up in the listing (live), and leads to the key.
    folder = row(page, "data-key", "app/")
    expect(folder).to_be_visible()
    folder.get_by_role("link").click()
    key_row = row(page, "data-key", "app/greeting")
    expect(key_row).to_be_visible()
    key_row.get_by_role("link").click()
    editor = page.get_by_test_id("kv-value")
    expect(editor).to_have_value("hello")

    # Edit.
    editor.fill("hello, world")
    page.get_by_test_id("kv-save").click()
    expect(page.get_by_test_id("kv-message")).to_contain_text("Saved")
    assert agent.ok("GET", "/v1/kv/app/greeting?raw") == "hello, world"

    # A write from elsewhere reaches the open editor through its blocking query.
    agent.ok("PUT", "/v1/kv/app/greeting", "from the API")
    expect(editor).to_have_value("from the API")

    # Delete (with the inline confirmation).
    page.get_by_test_id("kv-delete").click()
    page.get_by_test_id("kv-delete-confirm").click()
    expect(page).to_have_url(re.compile(r"#/kv/app/$"))
    expect(row(page, "data-key", "app/greeting")).to_have_count(0)
    status, _ = agent.call("GET", "/v1/kv/app/greeting")
    assert status == 404


def test_kv_folders_and_create_never_overwrites(agent, page):
    agent.ok("PUT", "/v1/kv/cfg/db/host", "db1")
    page.goto(agent.base + "/ui/#/kv/cfg/")
    expect(row(page, "data-key", "cfg/db/")).to_have_attribute("data-kind", "folder")

    # A folder made through the form, then a key inside it from the folder's own form.
    page.get_by_test_id("kv-new-key").fill("cache/")
    page.get_by_test_id("kv-create").click()
    expect(page.get_by_test_id("kv-form-message")).to_contain_text("Created")
    expect(row(page, "data-key", "cfg/cache/")).to_be_visible()
    row(page, "data-key", "cfg/cache/").get_by_role("link").click()
    # Type only once the folder's own view is mounted (its form names the folder); typing
    # earlier lands in the view being replaced.
    expect(page.get_by_test_id("kv-create-form")).to_contain_text("cfg/cache/")
    page.get_by_test_id("kv-new-key").fill("ttl")
    page.get_by_test_id("kv-new-value").fill("60")
    page.get_by_test_id("kv-create").click()
    expect(row(page, "data-key", "cfg/cache/ttl")).to_be_visible()
    assert agent.ok("GET", "/v1/kv/cfg/cache/ttl?raw") == "60"

    # "Create" on an existing key refuses instead of overwriting it.
    page.get_by_test_id("kv-new-key").fill("ttl")
    page.get_by_test_id("kv-new-value").fill("0")
    page.get_by_test_id("kv-create").click()
    expect(page.get_by_test_id("kv-form-message")).to_contain_text("already exists")
    assert agent.ok("GET", "/v1/kv/cfg/cache/ttl?raw") == "60"

    # Deleting a folder removes everything under it.
    page.goto(agent.base + "/ui/#/kv/cfg/")
    page.get_by_test_id("kv-delete-folder").click()
    page.get_by_test_id("kv-delete-folder-confirm").click()
    expect(page).to_have_url(re.compile(r"#/kv/$"))
    expect(row(page, "data-key", "cfg/")).to_have_count(0)
    status, _ = agent.call("GET", "/v1/kv/cfg/?recurse")
    assert status == 404


def test_hostile_kv_keys_and_values_are_text(agent, page):
    script_key = "xss/<script>window.__xss='key'</script>"
    img_key = "xss/<img src=x onerror=window.__xss='img'>"
    value = "<script>window.__xss='value'</script><img src=x onerror=window.__xss='value'>"
    agent.ok("PUT", kv_path(script_key), value)
    agent.ok("PUT", kv_path(img_key), value)

    page.goto(agent.base + "/ui/#/kv/xss/")
    expect(row(page, "data-key", img_key)).to_contain_text("<img src=x onerror=window.__xss='img'>")
    # With separator "/", the key's own "</script>" makes "xss/<script>...<" a folder.
    folder_key = script_key[: script_key.index("</") + 2]
    folder = row(page, "data-key", folder_key)
    expect(folder).to_contain_text("<script>window.__xss='key'</")
    folder.get_by_role("link").click()
    row(page, "data-key", script_key).get_by_role("link").click()

    expect(page.get_by_test_id("kv-key")).to_have_text(script_key)
    expect(page.get_by_test_id("kv-value")).to_have_value(value)
    view = page.get_by_test_id("view")
    assert view.locator("script").count() == 0
    assert view.locator("img").count() == 0
    page.wait_for_timeout(300)  # give any injected handler a chance to run
    assert page.evaluate("window.__xss") is None


def test_deep_links(agent, browser):
    pg = browser.new_page()
    try:
        pg.goto(agent.base + "/ui/services/consul")  # path form (SPA fallback) becomes a hash route
        expect(pg).to_have_url(re.compile(r"/ui/#/services/consul$"))
        expect(pg.get_by_test_id("service-name")).to_have_text("consul")
        pg.goto(agent.base + "/ui/#/nodes/ui-node")
        expect(pg.get_by_test_id("node-detail-name")).to_have_text("ui-node")
        expect(pg.get_by_test_id("checks-table")).to_contain_text("serfHealth")
    finally:
        pg.close()


def test_no_javascript_errors(page):
    assert page.errors == []


def test_connection_state_is_truthful_across_a_restart(browser):
    """With its own agent, which it restarts: the header says "unreachable" within 2 s and
    stops claiming "leader", only a short probe asks the agent meanwhile (no retry storm), and
    within 3 s of the agent answering again the header is live and the error banner is gone."""
    with running_agent("doomed-node") as doomed:
        doomed.ok("PUT", "/v1/agent/service/register", {"Name": "db", "Port": 5432})
        pg = watch_page(browser.new_page())
        try:
            pg.goto(doomed.base + "/ui/#/services")
            expect(row(pg, "data-service", "db")).to_be_visible()
            status = pg.get_by_test_id("conn-status")
            expect(status).to_have_attribute("data-state", "live")
            expect(pg.get_by_test_id("raft-role")).to_have_text("leader")
            before = hub_stats(pg)["requests"]
            doomed.proc.kill()
            doomed.proc.wait(timeout=10)
            expect(status).to_have_attribute("data-state", "error", timeout=2500)
            expect(status).to_contain_text("reconnecting")
            expect(pg.get_by_test_id("raft-role")).not_to_have_text("leader")
            pg.wait_for_timeout(4000)
            during = hub_stats(pg)["requests"] - before
            assert during <= 12, f"{during} requests in ~4 s while the agent was down"
            expect(row(pg, "data-service", "db")).to_be_visible()  # the last data stays on screen
            doomed.restart()
            restarted = time.monotonic()
            expect(status).to_have_attribute("data-state", "live", timeout=3000)
            expect(pg.get_by_test_id("raft-role")).to_have_text("leader", timeout=3000)
            assert time.monotonic() - restarted < 3.5
            # The new agent has no "db": the list follows it, and no banner is left over.
            expect(row(pg, "data-service", "db")).to_have_count(0, timeout=3000)
            expect(row(pg, "data-service", "consul")).to_be_visible()
            expect(pg.get_by_test_id("load-error")).to_have_count(0)
            expect(pg.get_by_test_id("stale-notice")).to_have_count(0)
            assert pg.errors == []
        finally:
            pg.close()
