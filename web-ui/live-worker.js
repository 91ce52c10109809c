// live-worker.js — the SharedWorker every dashboard tab of this agent connects to: one Hub
// (lib/hub.js) holds the blocking queries and polls for all of them, so four tabs cost the
// connections of one. Tabs talk to it through live.js. A tab that goes away says "bye" on
// pagehide; as a backstop each tab holds a Web Lock named after it, and a tab whose lock is
// gone loses its subscriptions.

import { Hub } from './lib/hub.js';

const hub = new Hub();
const tabs = new Map(); // MessagePort -> {tabId, subs: Set<string>, seen}

function drop(port) {
  const tab = tabs.get(port);
  if (!tab) return;
  for (const id of tab.subs) hub.unsubscribe(id);
  tab.stateOff?.();
  tabs.delete(port);
}

function handle(port, msg) {
  const tab = tabs.get(port);
  switch (msg.op) {
    case 'hello':
      tab.tabId = msg.tabId;
      tab.seen = Date.now();
      if (typeof msg.live === 'boolean') hub.setLive(msg.live);
      break;
    case 'sub': {
      const id = `${tab.tabId}:${msg.id}`;
      tab.subs.add(id);
      hub.subscribe(id, msg.spec, (m) => port.postMessage({ op: 'msg', id: msg.id, msg: m }));
      break;
    }
    case 'unsub': {
      const id = `${tab.tabId}:${msg.id}`;
      tab.subs.delete(id);
      hub.unsubscribe(id);
      break;
    }
    case 'live': hub.setLive(msg.on); break;
    case 'refresh': hub.refresh(); break;
    case 'stats': port.postMessage({ op: 'stats', rid: msg.rid, stats: { ...hub.stats, tabs: tabs.size, topics: hub.topics.size, parked: hub.parked.size } }); break;
    case 'bye': drop(port); break;
    default: break;
  }
}

self.onconnect = (event) => {
  const port = event.ports[0];
  const tab = { tabId: '', subs: new Set(), seen: Date.now() };
  tabs.set(port, tab);
  port.onmessage = (e) => handle(port, e.data);
  tab.stateOff = hub.onState((state) => port.postMessage({ op: 'state', state }));
  port.start();
};

// Tabs that closed without "bye" (a crash, a killed renderer) hold no lock any more.
setInterval(async () => {
  if (!self.navigator?.locks?.query) return;
  const { held } = await self.navigator.locks.query();
  const alive = new Set(held.map((l) => l.name));
  for (const [port, tab] of tabs) {
    if (tab.tabId && Date.now() - tab.seen > 5000 && !alive.has(`cairn-tab-${tab.tabId}`)) drop(port);
  }
}, 5000);
