"""Every page and deep link of the dashboard loads and says what it shows (issue 14): overview,
services (filter, health filter and sort in the URL), a service, an instance (address, port,
tagged addresses, meta, weights, check type, interval, notes), maintenance shown as
maintenance with its reason, a node with its sessions (invalidate), a KV lock's session link,
the cluster and ACL pages; path-form and Consul-style links (`/ui/dc1/services/web`, names with
dots); titles and focus; then axe-core (WCAG 2 AA) in light and dark, and light, dark and phone
screenshots in $CAIRN_UI_ARTIFACTS. Run as tests/ui/README.md says.
"""

import json
import re

import pytest
from playwright.sync_api import expect

from harness import LIVE, artifact, axe_violations, chromium, kv_path, running_agent, watch_page

expect.set_options(timeout=LIVE)
NODE = "pages-node"


@pytest.fixture(scope="module")
def agent():
    with running_agent(NODE) as api:
        api.ok("PUT", "/v1/agent/service/register", {
            "Name": "web", "ID": "web-1", "Port": 8080, "Address": "10.1.2.3", "Tags": ["blue", "v2"],
            "Meta": {"version": "2.4.1", "team": "edge"},
            "TaggedAddresses": {"lan": {"Address": "10.1.2.3", "Port": 8080}, "wan": {"Address": "203.0.113.9", "Port": 80}},
            "Weights": {"Passing": 7, "Warning": 2},
            "Checks": [{"Name": "web ttl", "TTL": "60s", "Status": "passing"}]})
        api.ok("PUT", "/v1/agent/service/register", {"Name": "vault.proxy", "Port": 8200})
        api.ok("PUT", "/v1/agent/service/register", {"Name": "db", "Port": 5432, "Check": {"TTL": "60s", "Status": "critical"}})
        api.ok("PUT", "/v1/agent/service/maintenance/db?enable=true&reason=" + "disk%20swap%20at%2014h")
        session = json.loads(api.ok("PUT", "/v1/session/create", {"Name": "deploy-lock", "TTL": "120s"}))["ID"]
        assert api.ok("PUT", kv_path("locks/deploy") + f"?acquire={session}", "held") == "true"
        api.session = session
        yield api


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture()
def page(browser):
    pg = watch_page(browser.new_page(viewport={"width": 1280, "height": 900}))
    yield pg
    assert pg.errors == [], pg.errors
    pg.close()


def test_every_page_loads_with_a_title_that_names_it(agent, page):
    pages = [
        ("#/overview", "Overview · cairn", "Overview"),
        ("#/services", "Services · cairn", "Services"),
        ("#/services/web", "web · Services · cairn", "web"),
        ("#/services/web/instances/pages-node/web-1", "web-1 on pages-node · Services · cairn", "web-1"),
        ("#/nodes", "Nodes · cairn", "Nodes"),
        (f"#/nodes/{NODE}", f"{NODE} · Nodes · cairn", NODE),
        ("#/kv/", "Key/Value · cairn", "Key/Value"),
        ("#/kv/locks/deploy", "locks/deploy · Key/Value · cairn", "deploy"),
        (f"#/sessions/{agent.session}", f"Session {agent.session} · Nodes · cairn", "Session"),
        ("#/cluster", "Cluster · cairn", "Cluster"),
        ("#/acls/tokens", "Tokens · ACL · cairn", "ACL tokens"),
    ]
    page.goto(agent.base + "/ui/#/acls/roles")
    for hash_route, title, heading in pages:
        page.evaluate("h => { location.hash = h }", hash_route)  # in-app navigation
        expect(page).to_have_title(title)
        h1 = page.locator("#view h1")
        expect(h1).to_contain_text(heading)
        expect(h1).to_be_focused()  # focus moves to the new page's heading


def test_overview_and_cluster(agent, page):
    page.goto(agent.base + "/ui/#/overview")
    expect(page.get_by_test_id("overview-dc")).to_have_text("dc1")
    expect(page.get_by_test_id("overview-leader")).to_have_text(f"127.0.0.1:{agent.server_port}")
    expect(page.get_by_test_id("overview-tolerance")).to_contain_text("0 servers")
    expect(page.get_by_test_id("overview-server-table")).to_contain_text(NODE)
    expect(page.get_by_test_id("total-checks-total")).to_have_text(re.compile(r"^[1-9]\d*$"))
    page.goto(agent.base + "/ui/#/cluster")
    server = page.locator(f'[data-testid="raft-server"][data-name="{NODE}"]')
    expect(server).to_have_attribute("data-role", "leader")
    expect(server).to_have_attribute("data-health", "passing")
    expect(page.get_by_test_id("cluster-leader")).to_contain_text(NODE)
    expect(page.get_by_test_id("raft-ring").locator("svg")).to_be_visible()


def test_instance_details_and_maintenance(agent, page):
    page.goto(agent.base + "/ui/#/services/web")
    page.locator('[data-instance="web-1"]').get_by_role("link", name="web-1").click()
    expect(page.get_by_test_id("instance-address")).to_have_text("10.1.2.3:8080")
    expect(page.get_by_test_id("instance-weights")).to_have_text("passing 7, warning 2")
    expect(page.get_by_test_id("instance-tagged-addresses")).to_contain_text("203.0.113.9:80")
    expect(page.get_by_test_id("instance-meta")).to_contain_text("2.4.1")
    ttl = page.locator('[data-check="service:web-1"]')
    expect(ttl.get_by_test_id("check-type")).to_have_text("ttl")
    serf = page.locator('[data-check="serfHealth"]')
    expect(serf).to_contain_text("Serf Health Status")

    page.goto(agent.base + "/ui/#/services/db")
    maint = page.locator('[data-check^="_service_maintenance"]')
    expect(maint).to_have_attribute("data-status", "maintenance")
    expect(maint.get_by_test_id("health-badge")).to_have_text("maintenance")
    expect(maint.get_by_test_id("check-notes")).to_contain_text("disk swap at 14h")


def test_sessions_lock_link_and_invalidate(agent, page):
    page.goto(agent.base + "/ui/#/kv/locks/deploy")
    page.get_by_test_id("kv-session").click()
    expect(page.get_by_test_id("session-id")).to_have_text(agent.session)
    expect(page.get_by_test_id("session-facts")).to_contain_text("deploy-lock")
    page.get_by_test_id("session-node").click()
    row = page.locator(f'[data-session="{agent.session}"]')
    expect(row).to_be_visible()
    row.get_by_test_id("session-invalidate").click()
    row.get_by_test_id("session-invalidate-confirm").click()
    expect(page.get_by_test_id("no-sessions")).to_be_visible()
    assert not agent.json(kv_path("locks/deploy"))[0].get("Session")  # the lock is released


def test_filters_live_in_the_url(agent, page):
    page.goto(agent.base + "/ui/#/services?status=critical")
    expect(page.get_by_test_id("service-status-filter")).to_have_value("critical")
    expect(page.locator('[data-testid="service-row"]')).to_have_count(1)
    expect(page.locator('[data-service="db"]')).to_be_visible()
    page.get_by_test_id("service-status-filter").select_option("")
    page.get_by_test_id("service-filter").fill("blue")
    page.get_by_test_id("service-sort").select_option("health")
    expect(page).to_have_url(re.compile(r"#/services\?filter=blue&sort=health$"))
    expect(page.locator('[data-testid="service-row"]')).to_have_count(1)
    page.reload()
    expect(page.get_by_test_id("service-filter")).to_have_value("blue")
    expect(page.locator('[data-service="web"]')).to_be_visible()


@pytest.mark.parametrize("path,expect_url,testid,text", [
    ("/ui/services/vault.proxy", r"/ui/#/services/vault\.proxy$", "service-name", "vault.proxy"),
    ("/ui/dc1/services/web", r"/ui/#/services/web$", "service-name", "web"),
    ("/ui/dc1/services/web/instances", r"/ui/#/services/web$", "service-name", "web"),
    ("/ui/dc1/services/web/instances/pages-node/web-1/health-checks", r"/ui/#/services/web/instances/pages-node/web-1$", "instance-id", "web-1"),
    (f"/ui/dc1/nodes/{NODE}/health-checks", rf"/ui/#/nodes/{NODE}$", "node-detail-name", NODE),
    ("/ui/dc1/kv/locks/deploy/edit", r"/ui/#/kv/locks/deploy$", "kv-key", "locks/deploy"),
    ("/ui/dc1/services?filter=web", r"/ui/#/services\?filter=web$", "service-count", "1 of"),
    ("/ui/dc1/acls/tokens", r"/ui/#/acls/tokens$", "acl-tab-tokens", "Tokens"),
])
def test_deep_links(agent, page, path, expect_url, testid, text):
    page.goto(agent.base + path)
    expect(page).to_have_url(re.compile(expect_url))
    expect(page.get_by_test_id(testid)).to_contain_text(text)


def test_accessibility_and_screenshots(agent, browser):
    """axe-core finds no serious or critical WCAG 2 AA violation (contrast, labels, names) on
    the main pages, light and dark; screenshots of both themes and of a 390 px phone."""
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
        pg = watch_page(context.new_page())
        for route in ["#/overview", "#/services", "#/services/web", "#/nodes", f"#/nodes/{NODE}", "#/kv/locks/deploy", "#/cluster"]:
            pg.goto(agent.base + "/ui/" + route)
            expect(pg.locator("#view h1")).to_be_visible()
            pg.wait_for_timeout(400)
            bad = axe_violations(pg)
            assert bad == [], f"{scheme} {route}: {json.dumps(bad, indent=1)}"
        pg.goto(agent.base + "/ui/#/services")
        expect(pg.locator('[data-service="web"]')).to_be_visible()
        pg.screenshot(path=artifact(f"services-{scheme}.png"), full_page=True)
        pg.goto(agent.base + "/ui/#/cluster")
        expect(pg.get_by_test_id("raft-ring").locator("svg")).to_be_visible()
        pg.screenshot(path=artifact(f"cluster-{scheme}.png"), full_page=True)
        assert pg.errors == [], pg.errors
        context.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    pg = watch_page(phone.new_page())
    pg.goto(agent.base + "/ui/#/services")
    expect(pg.locator('[data-service="web"]')).to_be_visible()
    # Usable at 390 px: nothing forces the page to scroll sideways.
    assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    pg.screenshot(path=artifact("services-phone.png"), full_page=True)
    pg.goto(agent.base + "/ui/#/services/web/instances/pages-node/web-1")
    expect(pg.get_by_test_id("instance-address")).to_be_visible()
    assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    pg.screenshot(path=artifact("instance-phone.png"), full_page=True)
    bad = axe_violations(pg)
    assert bad == [], json.dumps(bad, indent=1)
    phone.close()


def test_dark_mode_toggle(agent, page):
    page.goto(agent.base + "/ui/#/overview")
    toggle = page.get_by_test_id("theme-toggle")
    expect(toggle).to_have_text("Theme: auto")
    toggle.click()
    toggle.click()
    expect(toggle).to_have_text("Theme: dark")
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(17, 21, 28)", bg
    page.reload()  # kept in localStorage, applied before the first paint
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    toggle.click()
    expect(toggle).to_have_text("Theme: auto")
