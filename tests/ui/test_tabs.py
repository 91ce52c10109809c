"""Four tabs on one agent all show current data (issue 14): the tabs share one SharedWorker
hub, so together they park at most 4 blocking queries (the browser allows 6 connections per
host for every tab together) and poll agent/self once, not once per tab. Also Consul's
"disable live updates": with it off a new service shows only after Refresh.
Run as tests/ui/README.md says.
"""

import pytest
from playwright.sync_api import expect

from harness import LIVE, chromium, hub_stats, kv_path, running_agent, watch_page

expect.set_options(timeout=LIVE)


@pytest.fixture(scope="module")
def agent():
    with running_agent("tabs-node") as api:
        yield api


def test_four_tabs_all_show_current_data(agent):
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        routes = ["#/services", "#/nodes/tabs-node", "#/kv/tabs/", "#/services/fresh"]
        tabs = [watch_page(context.new_page()) for _ in routes]
        for tab, route in zip(tabs, routes):
            tab.goto(agent.base + "/ui/" + route)
            expect(tab.locator("#view h1")).to_be_visible()
        for tab in tabs:
            assert tab.evaluate("window.__cairn.live.hubMode()") == "shared-worker"
            expect(tab.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")

        # Let every tab park its queries, then change things: all four follow.
        tabs[0].wait_for_timeout(1500)
        agent.ok("PUT", "/v1/agent/service/register", {"Name": "fresh", "Port": 7000, "Check": {"TTL": "60s", "Status": "passing"}})
        agent.ok("PUT", kv_path("tabs/new-key"), "v")
        expect(tabs[0].locator('[data-service="fresh"]')).to_be_visible()
        expect(tabs[1].get_by_test_id("node-services").locator('[data-service="fresh"]')).to_be_visible()
        expect(tabs[2].locator('[data-key="tabs/new-key"]')).to_be_visible()
        expect(tabs[3].locator('[data-instance="fresh"]')).to_be_visible()
        agent.ok("PUT", "/v1/agent/check/fail/service:fresh")
        expect(tabs[0].locator('[data-service="fresh"]').get_by_test_id("health-badge")).to_have_attribute("data-status", "critical")
        expect(tabs[3].locator('[data-instance="fresh"]').get_by_test_id("health-badge").first).to_have_attribute("data-status", "critical")

        stats = hub_stats(tabs[0])
        assert stats["tabs"] == 4, stats
        assert stats["parked"] <= 4, stats
        # One agent/self poll for all tabs (every 2 s), not one per tab.
        assert stats["byPath"]["/v1/agent/self"] <= 12, stats
        for tab in tabs:
            assert tab.errors == [], tab.errors
        context.close()


def test_live_updates_can_be_turned_off(agent):
    with chromium() as browser:
        page = watch_page(browser.new_page())
        page.goto(agent.base + "/ui/#/services")
        expect(page.locator('[data-service="consul"]')).to_be_visible()
        toggle = page.get_by_test_id("live-toggle")
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "false")
        expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "paused")
        agent.ok("PUT", "/v1/agent/service/register", {"Name": "paused-svc", "Port": 7001})
        page.wait_for_timeout(2500)
        expect(page.locator('[data-service="paused-svc"]')).to_have_count(0)
        page.get_by_test_id("refresh").click()
        expect(page.locator('[data-service="paused-svc"]')).to_be_visible()
        assert page.evaluate("localStorage.getItem('cairn:live')") == "off"
        toggle.click()
        expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
        agent.ok("PUT", "/v1/agent/service/register", {"Name": "live-again", "Port": 7002})
        expect(page.locator('[data-service="live-again"]')).to_be_visible()
        assert page.errors == []
