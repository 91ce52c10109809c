"""The KV editor never corrupts a value (issue 14): a binary value stays read-only and survives
unchanged, a key's Flags survive a save, a stale check-and-set save shows a conflict instead of
clobbering, invalid JSON/YAML is flagged before saving, the history (kv_history_versions = 3)
restores an old version with its flags, search works within a folder, and a key with a dot deep
links. Every outcome is verified over the HTTP API. Run as tests/ui/README.md says.
"""

import base64
import json
import os
import re

import pytest
from playwright.sync_api import expect

from harness import LIVE, chromium, kv_path, running_agent, watch_page

expect.set_options(timeout=LIVE)

# 316 bytes that are not UTF-8 (the example size).
BLOB = bytes((i * 37 + 200) % 256 for i in range(316))


@pytest.fixture(scope="module")
def agent():
    import tempfile
    config = os.path.join(tempfile.mkdtemp(prefix="cairn-ui-kvcfg-"), "history.json")
    with open(config, "w") as f:
        json.dump({"kv_history_versions": 3}, f)
    with running_agent("kv-node", extra=(f"-config-file={config}",)) as api:
        yield api


@pytest.fixture(scope="module")
def page(agent):
    with chromium() as browser:
        pg = watch_page(browser.new_page(viewport={"width": 1280, "height": 900}))
        yield pg
        assert pg.errors == [], pg.errors


def entry(agent, key):
    return agent.json(kv_path(key))[0]


def test_binary_value_is_read_only_and_survives(agent, page):
    agent.ok("PUT", kv_path("bin/blob") + "?flags=7", BLOB)
    page.goto(agent.base + "/ui/#/kv/bin/blob")
    expect(page.get_by_test_id("kv-binary")).to_contain_text("316 bytes")
    expect(page.get_by_test_id("kv-save")).to_be_disabled()
    expect(page.get_by_test_id("kv-value")).to_have_value(base64.b64encode(BLOB).decode())
    assert page.get_by_test_id("kv-value").evaluate("el => el.readOnly")
    # Submitting the form anyway (Enter, a script) writes nothing.
    page.get_by_test_id("kv-edit-form").evaluate("f => f.requestSubmit()")
    page.wait_for_timeout(300)
    assert agent.raw(kv_path("bin/blob") + "?raw") == BLOB
    assert entry(agent, "bin/blob")["Flags"] == 7
    expect(page.get_by_test_id("kv-download")).to_be_visible()


def test_flags_survive_a_save(agent, page):
    agent.ok("PUT", kv_path("flags/key") + "?flags=42", "v1")
    page.goto(agent.base + "/ui/#/kv/flags/key")
    expect(page.get_by_test_id("kv-flags")).to_have_text("42")
    page.get_by_test_id("kv-value").fill("v2")
    page.get_by_test_id("kv-save").click()
    expect(page.get_by_test_id("kv-message")).to_contain_text("Saved")
    e = entry(agent, "flags/key")
    assert base64.b64decode(e["Value"]) == b"v2" and e["Flags"] == 42, e


def test_stale_cas_save_shows_a_conflict(agent, page):
    agent.ok("PUT", kv_path("cas/key"), "mine")
    page.goto(agent.base + "/ui/#/kv/cas/key")
    editor = page.get_by_test_id("kv-value")
    expect(editor).to_have_value("mine")
    editor.fill("my edit")
    agent.ok("PUT", kv_path("cas/key"), "theirs")  # someone else saves first
    expect(page.get_by_test_id("kv-conflict")).to_be_visible()
    page.get_by_test_id("kv-save").click()
    expect(page.get_by_test_id("kv-cas-conflict")).to_contain_text("changed on the server")
    assert agent.raw(kv_path("cas/key") + "?raw") == b"theirs"
    page.get_by_test_id("kv-reload").click()
    expect(editor).to_have_value("theirs")


def test_invalid_json_and_yaml_warn_before_saving(agent, page):
    agent.ok("PUT", kv_path("config/web/flags.json"), '{"a": 1}')
    # A key with a dot, deep linked in path form.
    page.goto(agent.base + "/ui/kv/config/web/flags.json")
    expect(page).to_have_url(re.compile(r"/ui/#/kv/config/web/flags\.json$"))
    expect(page).to_have_title(re.compile(r"^config/web/flags\.json · Key/Value · cairn$"))
    editor = page.get_by_test_id("kv-value")
    expect(editor).to_have_value('{"a": 1}')
    expect(page.locator(".editor .gutter")).to_have_text("1")
    expect(page.locator(".editor .tok-key")).to_have_text('"a"')  # highlighted
    editor.fill('{"a": ,\n}')
    expect(page.get_by_test_id("kv-invalid")).to_contain_text("Not valid JSON")
    page.get_by_test_id("kv-save").click()
    expect(page.get_by_test_id("kv-invalid-confirm")).to_be_visible()
    assert agent.raw(kv_path("config/web/flags.json") + "?raw") == b'{"a": 1}'
    expect(page.get_by_test_id("kv-save")).to_have_text("Save anyway")
    page.get_by_test_id("kv-save").click()
    expect(page.get_by_test_id("kv-message")).to_contain_text("Saved")
    assert agent.raw(kv_path("config/web/flags.json") + "?raw") == b'{"a": ,\n}'

    agent.ok("PUT", kv_path("config/app.yaml"), "a: 1\nb: [1, 2]\n")
    page.goto(agent.base + "/ui/#/kv/config/app.yaml")
    expect(editor).to_have_value("a: 1\nb: [1, 2]\n")
    expect(page.get_by_test_id("kv-invalid")).to_have_count(0)
    editor.fill("a: 1\nb\n")
    expect(page.get_by_test_id("kv-invalid")).to_contain_text("line 2")


def test_history_restores_an_old_version_with_its_flags(agent, page):
    agent.ok("PUT", kv_path("hist/key") + "?flags=5", "first")
    agent.ok("PUT", kv_path("hist/key") + "?flags=9", "second")
    page.goto(agent.base + "/ui/#/kv/hist/key")
    versions = page.get_by_test_id("kv-version")
    expect(versions).to_have_count(1)
    expect(versions.first).to_contain_text("first")
    versions.first.get_by_test_id("kv-restore").click()
    versions.first.get_by_test_id("kv-restore-confirm").click()
    expect(page.get_by_test_id("kv-restored")).to_be_visible()
    e = entry(agent, "hist/key")
    assert base64.b64decode(e["Value"]) == b"first" and e["Flags"] == 5, e
    expect(page.get_by_test_id("kv-value")).to_have_value("first")
    expect(versions).to_have_count(2)


def test_search_within_a_folder_and_escape_cancels(agent, page):
    for k in ["svc/alpha", "svc/beta", "svc/deep/alpha-2"]:
        agent.ok("PUT", kv_path(k), "x")
    page.goto(agent.base + "/ui/#/kv/svc/")
    expect(page.locator('[data-testid="kv-row"]')).to_have_count(3)
    page.get_by_test_id("kv-search").fill("alp")
    expect(page.locator('[data-testid="kv-row"]')).to_have_count(1)
    expect(page).to_have_url(re.compile(r"#/kv/svc/\?q=alp$"))
    page.get_by_test_id("kv-search-scope").select_option("all")
    expect(page.locator('[data-testid="kv-row"]')).to_have_count(2)
    expect(page.locator('[data-key="svc/deep/alpha-2"]')).to_be_visible()
    # Escape cancels the delete confirmation.
    page.get_by_test_id("kv-delete-folder").click()
    expect(page.get_by_test_id("kv-delete-folder-confirm")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("kv-delete-folder-confirm")).to_have_count(0)
    expect(page.get_by_test_id("kv-delete-folder")).to_be_focused()
    assert agent.raw(kv_path("svc/alpha") + "?raw") == b"x"
