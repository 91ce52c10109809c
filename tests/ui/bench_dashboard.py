"""Benchmark of the dashboard at scale (issue 14), run by hand, not in CI:

    CAIRN_BIN=... CAIRN_UI_DIR=$PWD/web-ui CAIRN_BENCH=.../cairn-bench \\
      ~/.cache/cairn-ui-venv/bin/python tests/ui/bench_dashboard.py [--services 5000 --instances 20000 --nodes 500]

Starts a `cairn agent -dev`, seeds the catalog with `cairn-bench --seed-ui-catalog` (services
`svc-<s>`, each instance with an `alive` and an `http` check), then measures in headless
Chromium, in the page (`performance.now()` and `requestAnimationFrame`):

- services page complete with health: navigation start → every service counted and the first
  screen of rows painted with its badges (a fresh browser context each time, median of 3);
- a filter keystroke to paint: the input event → the next frame after it (median and max of
  a typed word);
- a check change visible: the check flipped over HTTP → the row's badge critical in the page,
  and the requests that cost (counted by the shared hub; the header's agent/self and
  status/peers polls are reported apart);
- the nodes page: complete, and its DOM element count.

Then the same for a 23-service catalog. Prints a Markdown table (BENCHMARKS.md has the figures).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import chromium, running_agent  # noqa: E402

CAIRN_BENCH = os.environ.get("CAIRN_BENCH", os.path.expanduser("~/.cache/cairn-ui-bin/cairn-bench"))
HEADER_POLLS = ("/v1/agent/self", "/v1/status/peers")


def seed(api, services, instances, nodes):
    started = time.monotonic()
    out = subprocess.run([CAIRN_BENCH, "--seed-ui-catalog", "--http", api.base.removeprefix("http://"),
                          "--services", str(services), "--instances", str(instances), "--nodes", str(nodes)],
                         capture_output=True, text=True, timeout=900, check=True)
    return time.monotonic() - started, out.stdout.strip().splitlines()[-1]


def data_requests(stats):
    return sum(n for path, n in stats["byPath"].items() if path not in HEADER_POLLS)


SERVICES_DONE = """n => {
    const c = document.querySelector('[data-testid=service-count]');
    const badges = document.querySelectorAll('[data-testid=service-row] [data-testid=health-badge]');
    return c && c.textContent === n + ' services' && badges.length > 0 ? performance.now() : false;
}"""


def first_visit_ms(browser, api, services, loads=3):
    """The services page in a fresh browser context (cold SharedWorker, empty cache): median of
    `loads`, and every figure."""
    figures = []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(api.base + "/ui/#/services", wait_until="commit")
        figures.append(page.wait_for_function(SERVICES_DONE, arg=services, timeout=60_000, polling="raf").json_value())
        context.close()
    return statistics.median(figures), figures


def measure(browser, api, services, nodes):
    result = {}
    result["services_ms"], result["services_ms_all"] = first_visit_ms(browser, api, services)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(api.base + "/ui/#/services", wait_until="commit")
    page.wait_for_function(SERVICES_DONE, arg=services, timeout=60_000, polling="raf")
    result["services_rows_in_dom"] = page.evaluate("document.querySelectorAll('[data-testid=service-row]').length")
    result["services_dom"] = page.evaluate("document.getElementsByTagName('*').length")

    # 2. filter keystrokes, each to the next painted frame.
    times = page.evaluate("""async (word) => {
        const el = document.querySelector('[data-testid=service-filter]');
        const out = [];
        const work = [];
        for (let i = 1; i <= word.length; i += 1) {
            await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));  // start just after a frame, as a key press would
            const t0 = performance.now();
            el.value = word.slice(0, i);
            el.dispatchEvent(new Event('input', { bubbles: true }));
            work.push(performance.now() - t0);
            await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
            out.push(performance.now() - t0);
        }
        el.value = '';
        el.dispatchEvent(new Event('input', { bubbles: true }));
        return [out, work];
    }""", "svc-12")
    times, work = times
    result["filter_ms_median"] = statistics.median(times)
    result["filter_ms_max"] = max(times)
    result["filter_handler_ms_max"] = max(work)

    # 3. a check change: pick a passing service, show it, flip one of its checks.
    summaries = api.json("/v1/internal/ui/services")
    target = next(s["Name"] for s in summaries if s["ChecksCritical"] == 0 and s["ChecksWarning"] == 0 and s["Name"].startswith("svc-"))
    entry = api.json(f"/v1/health/service/{target}")[0]
    check = next(c for c in entry["Checks"] if c["ServiceID"])
    page.fill('[data-testid=service-filter]', target)
    page.wait_for_selector(f'[data-service="{target}"] [data-status=passing]')
    page.wait_for_timeout(2500)  # let the blocking query park again
    before = page.evaluate("() => window.__cairn.live.stats()")
    t0 = time.monotonic()
    api.ok("PUT", "/v1/catalog/register", {"Node": entry["Node"]["Node"], "Address": entry["Node"]["Address"], "SkipNodeUpdate": True,
                                           "Check": {"CheckID": check["CheckID"], "Name": check["Name"], "ServiceID": check["ServiceID"], "Status": "critical"}})
    page.wait_for_selector(f'[data-service="{target}"] [data-testid=health-badge][data-status=critical]', timeout=30_000)
    result["check_change_ms"] = (time.monotonic() - t0) * 1000
    after = page.evaluate("() => window.__cairn.live.stats()")
    result["check_change_requests"] = data_requests(after) - data_requests(before)
    result["check_change_header_polls"] = (after["requests"] - before["requests"]) - result["check_change_requests"]

    # 4. the nodes page, in a fresh page load (a hash change alone would keep the old clock).
    page.close()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(api.base + "/ui/#/nodes", wait_until="commit")
    result["nodes_ms"] = page.wait_for_function("""n => {
        const c = document.querySelector('[data-testid=node-count]');
        return c && c.textContent === n + ' nodes' && document.querySelector('[data-testid=node-row]') ? performance.now() : false;
    }""", arg=nodes, timeout=60_000, polling="raf").json_value()
    result["nodes_dom"] = page.evaluate("document.getElementsByTagName('*').length")
    result["errors"] = errors
    page.close()
    return result


def run(services, instances, nodes):
    with running_agent("bench-node") as api:
        seconds, line = seed(api, services, instances, nodes)
        print(f"seeded {services} services / {instances} instances / {nodes} nodes in {seconds:.1f} s: {line}", file=sys.stderr)
        total_nodes = len(api.json("/v1/catalog/nodes"))
        total_services = len(api.json("/v1/catalog/services"))
        with chromium() as browser:
            measure(browser, api, total_services, total_nodes)  # warm-up: the agent's caches, the browser's
            return measure(browser, api, total_services, total_nodes), total_services, total_nodes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=5000)
    parser.add_argument("--instances", type=int, default=20000)
    parser.add_argument("--nodes", type=int, default=500)
    args = parser.parse_args()
    rows = []
    for services, instances, nodes in [(args.services, args.instances, args.nodes), (23, 60, 8)]:
        result, total_services, total_nodes = run(services, instances, nodes)
        print(json.dumps(result), file=sys.stderr)
        rows.append((f"{total_services} services / {instances} instances / {total_nodes} nodes", result))
    print("| catalog | services page with health | filter keystroke → paint (median / max; handler max) | check change visible | its requests | nodes page | nodes page DOM elements |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['services_ms']:.0f} ms | {r['filter_ms_median']:.1f} / {r['filter_ms_max']:.1f} ms; {r['filter_handler_ms_max']:.1f} ms | {r['check_change_ms']:.0f} ms "
              f"| {r['check_change_requests']} (+{r['check_change_header_polls']} header polls) | {r['nodes_ms']:.0f} ms | {r['nodes_dom']} |")


if __name__ == "__main__":
    main()
