// iotsec dashboard: signs in with an API token (kept in sessionStorage, sent as a bearer
// token), renders the fleet, telemetry charts (inline SVG), rejections and the audit summary,
// and follows /api/events (server-sent events read with fetch, since EventSource cannot send
// an Authorization header). Every value from the API is inserted as text, never as HTML.
'use strict';

const KEY = 'iotsec.token';
const SVG = 'http://www.w3.org/2000/svg';
const state = { token: null, role: null, selected: null, devices: [], live: null, chartTimer: null };

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

class Unauthorized extends Error {}

async function api(path, options) {
  const res = await fetch(path, Object.assign({}, options, {
    headers: { Authorization: 'Bearer ' + state.token },
    cache: 'no-store',
  }));
  if (res.status === 401 || res.status === 429) throw new Unauthorized(res.status === 429 ? 'too many failed attempts, wait a minute' : 'token refused');
  return res;
}

function ago(ms) {
  if (ms == null) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

function time(ms) {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

// ---- sign in / out ---------------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  const res = await api('/api/whoami');
  if (!res.ok) throw new Unauthorized('token refused');
  const who = await res.json();
  state.role = who.role;
  sessionStorage.setItem(KEY, token);
  $('#who').textContent = who.role + ' (' + who.credential + ' ' + who.id + ')';
  $('#signin').hidden = true;
  $('#main').hidden = false;
  $('#signout').hidden = false;
  await refreshAll();
  startLive();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  state.token = null;
  if (state.live) state.live.abort();
  state.live = null;
  clearInterval(state.chartTimer);
  $('#main').hidden = true;
  $('#signout').hidden = true;
  $('#signin').hidden = false;
  $('#who').textContent = '';
  $('#live').textContent = '';
  $('#signin-error').textContent = message || '';
}

async function guarded(fn) {
  try {
    await fn();
  } catch (e) {
    if (e instanceof Unauthorized) signOut('Signed out: ' + e.message + '.');
    else console.error(e);
  }
}

// ---- fleet -----------------------------------------------------------------------------

function renderFleet(devices) {
  state.devices = devices;
  const body = $('#fleet tbody');
  body.replaceChildren();
  let online = 0;
  for (const d of devices) {
    if (d.online) online++;
    const stateName = d.status === 'revoked' ? 'revoked' : (d.online ? 'online' : 'offline');
    const row = el('tr', { 'data-id': d.id, class: d.id === state.selected ? 'selected' : '' },
      el('td', {}, d.id),
      el('td', {}, el('span', { class: 'badge ' + stateName }, stateName)),
      el('td', { title: d.last_seen_ms ? time(d.last_seen_ms) + ' UTC' : '' }, ago(d.last_seen_ms)),
      el('td', {}, d.firmware || '-'),
      el('td', { class: 'num' }, d.accepted),
      el('td', { class: 'num' }, d.rejected),
      el('td', {}));
    if (state.role === 'admin' && d.status !== 'revoked') {
      const b = el('button', { class: 'danger' }, 'Revoke');
      b.addEventListener('click', (ev) => { ev.stopPropagation(); guarded(() => revoke(d.id)); });
      row.lastChild.append(b);
    }
    row.addEventListener('click', () => guarded(() => openDevice(d.id)));
    body.append(row);
  }
  $('#fleet-summary').textContent = online + ' of ' + devices.length + ' online';
}

async function loadFleet() {
  const res = await api('/api/devices');
  renderFleet((await res.json()).devices);
}

async function revoke(id) {
  if (!confirm('Revoke ' + id + '? Its certificate goes on the CRL and the broker refuses it.')) return;
  const res = await api('/api/devices/' + encodeURIComponent(id) + '/revoke', { method: 'POST' });
  if (!res.ok) alert('Revoke failed: ' + ((await res.json()).error || res.status));
  await loadFleet();
}

// ---- telemetry chart -------------------------------------------------------------------

async function openDevice(id) {
  state.selected = id;
  for (const r of document.querySelectorAll('#fleet tbody tr')) r.classList.toggle('selected', r.dataset.id === id);
  $('#device').hidden = false;
  $('#device-id').textContent = id;
  await loadChart();
  clearInterval(state.chartTimer);
  state.chartTimer = setInterval(() => guarded(loadChart), 5000);
}

async function loadChart() {
  const id = state.selected;
  if (!id) return;
  const from = Date.now() - 3600 * 1000;
  let readings = [];
  let after = null;
  for (let page = 0; page < 10; page++) {
    let q = '/api/devices/' + encodeURIComponent(id) + '/telemetry?limit=5000&from=' + from;
    if (after != null) q += '&after=' + after;
    const res = await api(q);
    if (!res.ok) break;
    const body = await res.json();
    readings = readings.concat(body.readings);
    if (body.next_after == null) break;
    after = body.next_after;
  }
  if (id !== state.selected) return;
  drawCharts(readings);
}

function series(readings) {
  const out = new Map();
  for (const r of readings) {
    const p = r.payload;
    if (!p || typeof p !== 'object') continue;
    for (const [k, v] of Object.entries(p)) {
      if (typeof v !== 'number' || !isFinite(v) || k === 't' || k === 'ts' || k === 'seq' || k === 'v') continue;
      if (!out.has(k)) out.set(k, []);
      out.get(k).push([r.ts_ms, v]);
    }
  }
  return out;
}

function drawCharts(readings) {
  const box = $('#charts');
  box.replaceChildren();
  $('#device-count').textContent = readings.length + ' readings in the last hour';
  const all = series(readings);
  if (all.size === 0) {
    box.append(el('p', { class: 'muted' }, 'No numeric readings in the last hour.'));
    return;
  }
  for (const [name, pts] of all) box.append(chart(name, pts));
}

function chart(name, pts) {
  const W = 800, H = 180, L = 48, R = 10, T = 12, B = 22;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 1000; x1 += 1000; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-label': name, 'data-points': pts.length, 'data-series': name });
  s.append(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
  s.append(svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
  const label = (x, y, text, anchor) => { const t = svg('text', { x, y, 'text-anchor': anchor || 'start' }); t.textContent = text; s.append(t); };
  label(L - 4, T + 8, y1.toFixed(2), 'end');
  label(L - 4, H - B, y0.toFixed(2), 'end');
  label(L, H - 6, time(x0).slice(11));
  label(W - R, H - 6, time(x1).slice(11), 'end');
  s.append(svg('polyline', { points: pts.map((p) => sx(p[0]).toFixed(1) + ',' + sy(p[1]).toFixed(1)).join(' ') }));
  const step = Math.max(1, Math.floor(pts.length / 120));
  for (let i = 0; i < pts.length; i += step) s.append(svg('circle', { cx: sx(pts[i][0]).toFixed(1), cy: sy(pts[i][1]).toFixed(1), r: 2 }));
  return el('div', { class: 'chart' }, el('div', {}, name + ' (' + pts.length + ' points, last ' + ys[ys.length - 1] + ')'), s);
}

// ---- rejections ------------------------------------------------------------------------

function renderReasons(counts) {
  const body = $('#reasons tbody');
  body.replaceChildren();
  const max = Math.max(1, ...counts.map((c) => c.count));
  let total = 0;
  for (const c of counts) {
    total += c.count;
    const bar = el('div', { class: 'bar' });
    bar.style.width = Math.round(100 * c.count / max) + '%';
    body.append(el('tr', { 'data-reason': c.reason }, el('td', {}, c.reason), el('td', { class: 'num' }, c.count), el('td', { class: 'barcell' }, bar)));
  }
  $('#rejections-total').textContent = total + ' in total';
}

async function loadRejections() {
  const res = await api('/api/rejections?limit=50');
  const body = await res.json();
  renderReasons(body.counts);
  const recent = $('#recent tbody');
  recent.replaceChildren();
  for (const r of body.recent) {
    recent.append(el('tr', { 'data-reason': r.reason }, el('td', {}, time(r.received_ms)), el('td', {}, r.device || '-'), el('td', {}, r.reason), el('td', { class: 'num' }, r.size)));
  }
  if (body.recent.length === 0) recent.append(el('tr', {}, el('td', { colspan: '4', class: 'muted' }, 'No rejected message.')));
}

// ---- audit -----------------------------------------------------------------------------

async function loadAudit() {
  const res = await api('/api/audit');
  const body = $('#audit tbody');
  body.replaceChildren();
  const empty = $('#audit-empty');
  if (!res.ok) {
    $('#audit').hidden = true;
    empty.hidden = false;
    empty.textContent = 'No audit report yet: run iotsec audit --format json --out <the [web] audit_report path>.';
    return;
  }
  const report = await res.json();
  $('#audit').hidden = false;
  empty.hidden = true;
  $('#audit-meta').textContent = (report.generated || '') + ', ' + (report.findings || []).length + ' findings';
  for (const c of report.categories || []) {
    const counts = Object.entries(c.counts || {}).map(([k, v]) => v + ' ' + k).join(', ') || '-';
    const cls = c.status || 'not-assessed';
    body.append(el('tr', { 'data-category': c.category }, el('td', {}, c.category), el('td', {}, c.title || ''), el('td', {}, el('span', { class: 'badge ' + cls }, cls.replace('-', ' '))), el('td', {}, counts)));
  }
}

// ---- firmware --------------------------------------------------------------------------

function size(bytes) {
  if (bytes >= 1048576) return (bytes / 1048576).toFixed(1) + ' MiB';
  if (bytes >= 1024) return (bytes / 1024).toFixed(1) + ' KiB';
  return bytes + ' B';
}

async function loadFirmware() {
  const [rres, fres] = await Promise.all([api('/api/rollouts'), api('/api/firmware')]);
  const rollouts = rres.ok ? (await rres.json()).rollouts : [];
  const releases = fres.ok ? (await fres.json()).releases : [];
  const versions = new Map(releases.map((r) => [r.id, r.version]));
  const body = $('#rollouts tbody');
  body.replaceChildren();
  for (const r of rollouts) {
    const targets = el('td', { class: 'targets' });
    for (const d of r.devices) {
      const label = d.device + ': ' + d.state.replace('_', ' ') + (d.progress != null && d.state === 'downloading' ? ' ' + d.progress + '%' : '');
      targets.append(el('span', { class: 'badge ' + d.state, title: d.reason || '', 'data-device': d.device }, label));
    }
    const stage = r.status === 'halted' && r.halt
      ? 'halted in ' + r.halt.stage + ' of ' + r.stages.length + ' (' + r.halt.failed + ' of ' + r.halt.total + ' failed)'
      : r.stage + ' of ' + r.stages.length;
    body.append(el('tr', { 'data-rollout': r.id },
      el('td', {}, '#' + r.id),
      el('td', {}, (versions.get(r.release) || '?') + ' (' + r.release + ')'),
      el('td', {}, el('span', { class: 'badge ' + r.status }, r.status)),
      el('td', {}, stage),
      targets));
  }
  const empty = $('#rollouts-empty');
  empty.hidden = rollouts.length > 0;
  empty.textContent = 'No rollout yet: iotsec fw publish FILE, then iotsec fw rollout start RELEASE --device ID (or --all).';
  $('#rollouts-summary').textContent = rollouts.filter((r) => r.status === 'running').length + ' running';
  const rel = $('#releases tbody');
  rel.replaceChildren();
  for (const r of releases.slice().reverse()) {
    rel.append(el('tr', { 'data-release': r.id }, el('td', {}, r.id), el('td', {}, r.version), el('td', {}, r.hardware_id),
      el('td', { class: 'num' }, r.security_counter), el('td', { class: 'num' }, size(r.size)), el('td', {}, time(r.published_ms))));
  }
  if (releases.length === 0) rel.append(el('tr', {}, el('td', { colspan: '6', class: 'muted' }, 'No release published.')));
}

// ---- live updates ----------------------------------------------------------------------

async function refreshAll() {
  await Promise.all([loadFleet(), loadRejections(), loadAudit(), loadFirmware()]);
}

function startLive() {
  if (state.live) state.live.abort();
  const ctl = new AbortController();
  state.live = ctl;
  follow(ctl).catch((e) => {
    if (ctl.signal.aborted) return;
    if (e instanceof Unauthorized) { signOut('Signed out: ' + e.message + '.'); return; }
    // Stream lost: poll once, then reconnect.
    $('#live').textContent = 'reconnecting...';
    setTimeout(() => { if (state.live === ctl) { guarded(refreshAll); startLive(); } }, 3000);
  });
}

async function follow(ctl) {
  const res = await fetch('/api/events', { headers: { Authorization: 'Bearer ' + state.token }, signal: ctl.signal, cache: 'no-store' });
  if (res.status === 401 || res.status === 429) throw new Unauthorized('token refused');
  if (!res.ok || !res.body) throw new Error('events: ' + res.status);
  $('#live').textContent = 'live';
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let lastRejections = -1;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('stream ended');
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      }
      if (event !== 'fleet' || !data) continue;
      const snap = JSON.parse(data);
      renderFleet(snap.devices);
      renderReasons(snap.rejections);
      const total = snap.rejections.reduce((a, c) => a + c.count, 0);
      if (total !== lastRejections) { lastRejections = total; guarded(loadRejections); }
      $('#live').textContent = 'live, updated ' + time(snap.at_ms).slice(11);
    }
  }
}

// ---- start -----------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('#signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('#token').value.trim();
    $('#token').value = '';
    signIn(t).catch((e) => signOut(e instanceof Unauthorized ? 'That token was refused.' : 'Sign-in failed: ' + e.message));
  });
  $('#signout').addEventListener('click', () => signOut('Signed out.'));
  setInterval(() => { if (state.token) { renderFleet(state.devices); guarded(loadFirmware); } }, 5000);
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved).catch(() => signOut(''));
});
