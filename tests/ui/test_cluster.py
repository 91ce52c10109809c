"""The cluster page, live (issue 14): three server agents on distinct loopback addresses; the
page, opened on a follower, shows the three servers with the leader; after `kill -9` of the
leader it shows the new leader and the killed server as critical, within gossip's failure
detection time, without a reload. The header never claims a role the agent does not have.
Screenshots before and after go to $CAIRN_UI_ARTIFACTS. Run as tests/ui/README.md says.
"""

import json
import time

import pytest
from playwright.sync_api import expect

from harness import Cluster, artifact, chromium, watch_page

FORM_S = 60  # cluster formation on 2 busy cores
DETECT_MS = 20_000  # a new leader and gossip's verdict on the dead one


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(3)
    try:
        deadline = time.monotonic() + FORM_S
        while c.leader() is None:
            assert time.monotonic() < deadline, f"no leader within {FORM_S} s:\n{c.logs()}"
            time.sleep(0.5)
        # Autopilot sees every server healthy before the test starts.
        while True:
            status, raw = c.api(0).call("GET", "/v1/operator/autopilot/health")
            if status == 200 and json.loads(raw).get("Healthy") is True:
                break
            assert time.monotonic() < deadline, f"cluster not healthy: {raw[:400]!r}\n{c.logs()}"
            time.sleep(0.5)
        yield c
    finally:
        c.close()


def test_cluster_page_follows_a_leader_kill(cluster):
    leader = cluster.leader()
    follower = next(i for i in range(3) if i != leader)
    old = cluster.servers[leader]["name"]
    with chromium() as browser:
        page = watch_page(browser.new_page(viewport={"width": 1280, "height": 900}))
        page.goto(cluster.api(follower).base + "/ui/#/cluster")
        rows = page.get_by_test_id("raft-server")
        expect(rows).to_have_count(3, timeout=15_000)
        expect(page.get_by_test_id("cluster-leader")).to_have_text(old, timeout=15_000)
        expect(page.locator(f'[data-testid="raft-server"][data-name="{old}"]')).to_have_attribute("data-role", "leader")
        for s in cluster.servers:
            expect(page.locator(f'[data-testid="raft-server"][data-name="{s["name"]}"]')).to_have_attribute("data-health", "passing", timeout=15_000)
        expect(page.get_by_test_id("raft-role")).to_have_text("follower")
        page.screenshot(path=artifact("cluster-before-kill.png"), full_page=True)

        killed_at = time.monotonic()
        cluster.kill9(leader)
        new_leader = page.get_by_test_id("cluster-leader")
        expect(new_leader).not_to_have_text(old, timeout=DETECT_MS)
        expect(page.locator(f'[data-testid="raft-server"][data-name="{old}"]')).to_have_attribute("data-health", "critical", timeout=DETECT_MS)
        detected_s = time.monotonic() - killed_at
        name = new_leader.text_content()
        assert name in [s["name"] for s in cluster.servers if s["name"] != old], name
        expect(page.locator(f'[data-testid="raft-server"][data-name="{name}"]')).to_have_attribute("data-role", "leader")
        expect(page.get_by_test_id("cluster-events")).to_contain_text(f"Leader is now {name}")
        expect(page.get_by_test_id("cluster-events")).to_contain_text(f"{old} is down")
        page.screenshot(path=artifact("cluster-after-kill.png"), full_page=True)
        print(f"new leader {name} and {old} critical on the page {detected_s:.1f} s after kill -9")
        assert page.errors == [], page.errors
