// doge ui: the dashboard's page. Plain JavaScript, no libraries: the binary serves this file
// as it is (doge/ui/static/), and every chart is SVG drawn here.
'use strict';
(() => {
  const POLL_MS = 2000; // curves of running runs
  // The runs table (status, steps, new runs) refreshes every 5 s, or less often on a registry
  // where listing takes long: every 20 times the last answer's time, up to a minute.
  const TABLE_POLL_MS = 5000;
  const tableInterval = () => Math.min(60000, Math.max(TABLE_POLL_MS, 20 * state.tableMs));
  const PAGE_SIZE = 50;
  const AUTO_SELECT = 5; // runs whose curves the first page shows
  const MARKERS_UNDER = 40; // series this short get a marker per point
  const PREFERRED = ['loss', 'eval_loss', 'lr', 'tokens_per_s'];
  // One colour per run, kept for the whole session (table, curves, legends, bars).
  const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2',
    '#db2777', '#65a30d', '#475569', '#ea580c', '#0d9488', '#9333ea'];
  const SVGNS = 'http://www.w3.org/2000/svg';

  const state = {
    gen: 0, // bumped by each navigation: late answers of an old view are dropped
    timers: [],
    where: '',
    sort: '-created',
    page: 0,
    sel: [],
    selFromHash: false,
    colors: {},
    status: {}, // run id -> status
    series: {}, // run \u0001 name -> {run, name, points: [[step, value]], last}
    loaded: new Set(), // runs whose curves were fetched in full
    runsHash: '#/',
    logY: false,
    smoothing: 0,
    firstRender: null,
    tableMs: 0, // how long the last /api/runs took
  };

  // ---- DOM helpers -------------------------------------------------------------------------
  function set(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    return el;
  }
  function add(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return el;
  }
  const h = (tag, attrs, ...kids) => add(set(document.createElement(tag), attrs), kids);
  const s = (tag, attrs, ...kids) => add(set(document.createElementNS(SVGNS, tag), attrs), kids);
  const $ = (id) => document.getElementById(id);
  // replaceChildren, but skipping null kids and flattening arrays (as h() does).
  const fill = (el, ...kids) => { el.replaceChildren(); return add(el, kids); };

  // ---- numbers and text --------------------------------------------------------------------
  function fmt(x) {
    if (x === null || x === undefined || !Number.isFinite(x)) return '—';
    const a = Math.abs(x);
    if (a === 0) return '0';
    if (a >= 1e5 || a < 1e-3) return x.toExponential(2).replace('e+', 'e');
    return String(+x.toPrecision(4));
  }
  function fmtTick(v, step) {
    if (v === 0) return '0';
    const a = Math.abs(v);
    if (a >= 1e4 && Math.abs(v / 1000 - Math.round(v / 1000)) < 1e-9 && step >= 1000) {
      return String(+(v / 1000).toPrecision(6)) + 'k';
    }
    if (a >= 1e6 || a < 1e-3 || step < 1e-4) return v.toExponential(1).replace('e+', 'e');
    const dec = Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
    return v.toFixed(dec);
  }
  // A config value as flattened; numbers without float noise (0.0006000000000000001 -> 0.0006).
  function configText(v) {
    if (v === null || v === undefined) return '—';
    const x = Number(v);
    return v.trim() !== '' && Number.isFinite(x) && /[.eE]/.test(v) ? String(+x.toPrecision(12)) : v;
  }
  const shortTime = (iso) => (iso ? iso.slice(0, 16).replace('T', ' ') : '—');
  function duration(sec) {
    if (!Number.isFinite(sec) || sec < 0) return '—';
    const h_ = Math.floor(sec / 3600);
    const m = Math.floor((sec % 3600) / 60);
    const s_ = Math.floor(sec % 60);
    return h_ ? `${h_}h ${m}m` : m ? `${m}m ${s_}s` : `${s_}s`;
  }
  const isLive = (status) => status === 'running';

  // ---- colours -----------------------------------------------------------------------------
  function hashIndex(id) {
    let x = 2166136261;
    for (let i = 0; i < id.length; i++) x = Math.imul(x ^ id.charCodeAt(i), 16777619);
    return (x >>> 0) % PALETTE.length;
  }
  // A run keeps its colour; a new one takes the first colour no shown run has.
  function colorsFor(ids) {
    const used = new Set(ids.map((id) => state.colors[id]).filter(Boolean));
    const seen = new Set();
    for (const id of ids) {
      const c = state.colors[id];
      if (c && !seen.has(c)) { seen.add(c); continue; }
      const free = PALETTE.find((p) => !used.has(p) && !seen.has(p));
      state.colors[id] = free || PALETTE[hashIndex(id)];
      used.add(state.colors[id]);
      seen.add(state.colors[id]);
    }
    return ids.map((id) => state.colors[id]);
  }
  const colorOf = (id) => state.colors[id] || colorsFor([id])[0];
  const swatch = (id) => h('span', { class: 'swatch', style: `background:${colorOf(id)}` });

  // ---- the API -----------------------------------------------------------------------------
  async function api(path) {
    const r = await fetch(path, { cache: 'no-store', headers: { Accept: 'application/json' } });
    let body;
    try { body = await r.json(); } catch (_) { body = { error: `${r.status} ${r.statusText}` }; }
    if (!r.ok) {
      const e = new Error(body.error || `${r.status} ${r.statusText}`);
      e.status = r.status;
      e.body = body;
      throw e;
    }
    setLive(true);
    return body;
  }
  const qs = (o) => Object.entries(o)
    .filter(([, v]) => v !== '' && v !== null && v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');

  function setLive(ok, err) {
    const el = $('live');
    if (!el) return;
    el.className = ok ? 'live on' : 'live off';
    el.textContent = ok ? 'live' : 'offline';
    el.title = ok ? 'refreshing every 2 s' : `last refresh failed: ${err && err.message}`;
  }

  // Calls fn every `ms` (a number, or a function giving the next wait) while the page is shown.
  function every(ms, fn) {
    let stopped = false;
    let t = null;
    const wait = () => (typeof ms === 'function' ? ms() : ms);
    const tick = async () => {
      if (stopped) return;
      if (!document.hidden) {
        try { await fn(); setLive(true); } catch (e) { setLive(false, e); }
      }
      if (!stopped) t = setTimeout(tick, wait());
    };
    t = setTimeout(tick, wait());
    state.timers.push(() => { stopped = true; clearTimeout(t); });
  }
  function stopTimers() {
    state.timers.forEach((stop) => stop());
    state.timers = [];
  }

  // ---- curves: fetching --------------------------------------------------------------------
  const key = (run, name) => `${run}\u0001${name}`;

  function merge(resp, full) {
    const refetch = new Set();
    for (const [id, st] of Object.entries(resp.runs || {})) state.status[id] = st;
    for (const sr of resp.series) {
      const k = key(sr.run, sr.name);
      const old = state.series[k];
      const pts = sr.points;
      if (full || !old) {
        state.series[k] = { run: sr.run, name: sr.name, points: pts, last: sr.last_step };
        continue;
      }
      if (sr.last_step !== null && old.last !== null && sr.last_step < old.last) {
        refetch.add(sr.run); // resumed from a checkpoint: its later steps were rewritten
        continue;
      }
      if (pts.length) {
        const first = pts[0][0];
        let keep = old.points.length;
        while (keep > 0 && old.points[keep - 1][0] >= first) keep--;
        old.points = old.points.slice(0, keep).concat(pts);
        old.last = sr.last_step;
      }
    }
    return refetch;
  }

  // Fetches in full the curves of runs not fetched yet.
  async function ensureSeries(ids) {
    const missing = ids.filter((id) => !state.loaded.has(id));
    for (let i = 0; i < missing.length; i += 16) {
      const part = missing.slice(i, i + 16);
      const resp = await api(`/api/metrics?${qs({ ids: part.join(',') })}`);
      merge(resp, true);
      part.forEach((id) => state.loaded.add(id));
    }
    return missing.length > 0;
  }

  // Fetches the points logged since the last poll, for the runs still running. True when
  // something changed.
  async function pollSeries(ids) {
    const live = ids.filter((id) => state.loaded.has(id) && isLive(state.status[id]));
    if (!live.length) return false;
    const after = [];
    for (const sr of Object.values(state.series)) {
      if (live.includes(sr.run) && sr.points.length) {
        after.push(`${sr.run}:${sr.name}:${sr.points[sr.points.length - 1][0]}`);
      }
    }
    const before = live.map((id) => state.status[id]).join();
    const resp = await api(`/api/metrics?${qs({ ids: live.join(','), after: after.join(',') })}`);
    const refetch = merge(resp, false);
    if (refetch.size) {
      refetch.forEach((id) => state.loaded.delete(id));
      await ensureSeries([...refetch]);
    }
    const changed = resp.series.some((sr) => sr.points.length) || refetch.size > 0;
    return changed || before !== live.map((id) => state.status[id]).join();
  }

  function metricNames(ids) {
    const names = new Set();
    for (const sr of Object.values(state.series)) if (ids.includes(sr.run)) names.add(sr.name);
    return [...names].sort((a, b) => {
      const ia = PREFERRED.indexOf(a);
      const ib = PREFERRED.indexOf(b);
      if (ia >= 0 || ib >= 0) return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
      return a.localeCompare(b);
    });
  }

  // ---- curves: drawing ---------------------------------------------------------------------
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) return { ticks: [lo], step: Math.abs(lo) || 1 };
    const raw = (hi - lo) / n;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(+v.toPrecision(12));
    }
    return { ticks, step };
  }
  function logTicks(lo, hi) {
    const ticks = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= lo && v <= hi) ticks.push(v);
      }
    }
    return ticks;
  }

  function smooth(points, w) {
    if (!w) return points;
    let last = 0;
    let n = 0;
    return points.map(([x, y]) => {
      if (!Number.isFinite(y)) return [x, y];
      last = last * w + (1 - w) * y;
      n++;
      return [x, last / (1 - w ** n)]; // debiased, as TensorBoard's
    });
  }

  // Path data with at most about two points per pixel column (min and max kept); gaps where a
  // value is not a number.
  function pathData(points, sx, sy) {
    let d = '';
    let pen = false;
    let col = null;
    let lo = null;
    let hi = null;
    const flush = () => {
      if (col === null) return;
      const a = lo[2] < hi[2] ? lo : hi;
      const b = lo[2] < hi[2] ? hi : lo;
      d += `${pen ? 'L' : 'M'}${a[0].toFixed(1)},${a[1].toFixed(1)}`;
      pen = true;
      if (b !== a) d += `L${b[0].toFixed(1)},${b[1].toFixed(1)}`;
      col = null;
    };
    points.forEach(([x, y], i) => {
      const py = sy(y);
      if (y === null || !Number.isFinite(py)) { flush(); pen = false; return; }
      const px = sx(x);
      const c = Math.round(px);
      if (c !== col) { flush(); col = c; lo = hi = [px, py, i]; return; }
      if (py < lo[1]) lo = [px, py, i];
      if (py > hi[1]) hi = [px, py, i];
    });
    flush();
    return d;
  }

  function nearest(points, x) {
    let lo = 0;
    let hi = points.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid][0] < x) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && Math.abs(points[lo - 1][0] - x) <= Math.abs(points[lo][0] - x)) lo--;
    return points[lo];
  }

  // One metric's chart: `lines` are {id, color, points}.
  function lineChart(name, lines, width) {
    const W = Math.max(280, Math.floor(width));
    const H = 250;
    const m = { l: 60, r: 16, t: 10, b: 40 };
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b;
    let x0 = Infinity; let x1 = -Infinity; let y0 = Infinity; let y1 = -Infinity;
    const logY = state.logY && lines.every((l) => l.points.every(([, y]) => !(y <= 0)));
    for (const l of lines) {
      for (const [x, y] of l.points) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        if (Number.isFinite(y)) { y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
      }
    }
    const svg = s('svg', { class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`,
      'data-metric': name, role: 'img', 'aria-label': `${name} by step` });
    if (!Number.isFinite(x0) || !Number.isFinite(y0)) {
      svg.append(s('text', { x: W / 2, y: H / 2, class: 'empty', 'text-anchor': 'middle',
        text: 'no points yet' }));
      return svg;
    }
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (logY) {
      if (y1 === y0) { y0 /= 2; y1 *= 2; }
    } else {
      if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
      const pad = (y1 - y0) * 0.05;
      y0 -= pad; y1 += pad;
    }
    const sx = (x) => m.l + ((x - x0) / (x1 - x0)) * pw;
    const sy = logY
      ? (y) => m.t + ph - ((Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))) * ph
      : (y) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;

    const grid = s('g', { class: 'grid' });
    const axes = s('g', { class: 'axis' });
    const xt = niceTicks(x0, x1, Math.max(2, Math.floor(pw / 90)));
    for (const v of xt.ticks) {
      const x = sx(v);
      grid.append(s('line', { x1: x, x2: x, y1: m.t, y2: m.t + ph }));
      axes.append(s('line', { x1: x, x2: x, y1: m.t + ph, y2: m.t + ph + 4 }));
      axes.append(s('text', { x, y: m.t + ph + 16, 'text-anchor': 'middle', text: fmtTick(v, xt.step) }));
    }
    const yTicks = logY ? logTicks(y0, y1) : niceTicks(y0, y1, 5).ticks;
    const yStep = logY ? 0 : niceTicks(y0, y1, 5).step;
    for (const v of yTicks) {
      const y = sy(v);
      grid.append(s('line', { x1: m.l, x2: m.l + pw, y1: y, y2: y }));
      axes.append(s('line', { x1: m.l - 4, x2: m.l, y1: y, y2: y }));
      axes.append(s('text', { x: m.l - 7, y: y + 4, 'text-anchor': 'end',
        text: logY ? fmt(v) : fmtTick(v, yStep) }));
    }
    axes.append(s('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph }));
    axes.append(s('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph }));
    axes.append(s('text', { class: 'title', x: m.l + pw / 2, y: H - 6, 'text-anchor': 'middle', text: 'step' }));
    axes.append(s('text', { class: 'title', 'text-anchor': 'middle',
      transform: `translate(14 ${m.t + ph / 2}) rotate(-90)`, text: name + (logY ? ' (log)' : '') }));
    svg.append(grid, axes);

    const clipId = `clip-${Math.random().toString(36).slice(2)}`;
    svg.append(s('defs', {}, s('clipPath', { id: clipId },
      s('rect', { x: m.l, y: m.t - 4, width: pw, height: ph + 8 }))));
    const plot = s('g', { 'clip-path': `url(#${clipId})` });
    for (const l of lines) {
      const last = l.points[l.points.length - 1];
      const shown = smooth(l.points, state.smoothing);
      if (state.smoothing) {
        plot.append(s('path', { class: 'raw', d: pathData(l.points, sx, sy), stroke: l.color }));
      }
      plot.append(s('path', {
        class: 'line', d: pathData(shown, sx, sy), stroke: l.color,
        'data-run': l.id, 'data-metric': name, 'data-points': l.points.length,
        'data-last-step': last ? last[0] : '', 'data-last-value': last ? last[1] : '',
      }));
      if (l.points.length <= MARKERS_UNDER) {
        for (const [x, y] of shown) {
          if (Number.isFinite(sy(y))) {
            plot.append(s('circle', { class: 'marker', cx: sx(x).toFixed(1), cy: sy(y).toFixed(1),
              r: 2.8, fill: l.color, 'data-run': l.id }));
          }
        }
      }
    }
    svg.append(plot);

    // Hover: a guide at the nearest step and every run's value there.
    const guide = s('line', { class: 'guide', y1: m.t, y2: m.t + ph, visibility: 'hidden' });
    const dots = s('g', { class: 'dots' });
    const overlay = s('rect', { x: m.l, y: m.t, width: pw, height: ph, fill: 'transparent' });
    svg.append(guide, dots, overlay);
    const tip = $('tooltip');
    overlay.addEventListener('mousemove', (ev) => {
      const box = svg.getBoundingClientRect();
      const step = x0 + ((ev.clientX - box.left - m.l) / pw) * (x1 - x0);
      dots.replaceChildren();
      const rows = [];
      let at = null;
      for (const l of lines) {
        if (!l.points.length) continue;
        const shown = state.smoothing ? smooth(l.points, state.smoothing) : l.points;
        const p = nearest(shown, step);
        at = at === null || Math.abs(p[0] - step) < Math.abs(at - step) ? p[0] : at;
        if (Number.isFinite(sy(p[1]))) {
          dots.append(s('circle', { cx: sx(p[0]), cy: sy(p[1]), r: 4, fill: l.color }));
        }
        rows.push(h('div', {}, swatch(l.id), h('span', { class: 'mono', text: l.id }),
          h('b', { text: fmt(p[1]) }), h('span', { class: 'muted', text: `@${p[0]}` })));
      }
      if (at === null) return;
      guide.setAttribute('x1', sx(at)); guide.setAttribute('x2', sx(at));
      guide.setAttribute('visibility', 'visible');
      fill(tip, h('div', { class: 'tip-title', text: `${name} · step ${at}` }), rows);
      tip.hidden = false;
      const tx = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      tip.style.left = `${tx + window.scrollX}px`;
      tip.style.top = `${ev.clientY + 14 + window.scrollY}px`;
    });
    overlay.addEventListener('mouseleave', () => {
      tip.hidden = true;
      guide.setAttribute('visibility', 'hidden');
      dots.replaceChildren();
    });
    return svg;
  }

  function chartCard(name, ids, width) {
    const lines = ids.map((id) => {
      const sr = state.series[key(id, name)];
      return { id, color: colorOf(id), points: sr ? sr.points : [] };
    }).filter((l) => l.points.length);
    const legend = h('div', { class: 'legend' }, lines.map((l) => {
      const last = l.points[l.points.length - 1];
      return h('span', { class: 'item', 'data-run': l.id }, swatch(l.id),
        h('span', { class: 'mono', text: l.id }),
        h('b', { text: fmt(last[1]) }), h('span', { class: 'muted', text: `@${last[0]}` }));
    }));
    return h('div', { class: 'card chart-card', 'data-metric': name },
      h('h3', { text: name }), legend, lineChart(name, lines, width));
  }

  // Draws every metric of `ids` into `box`, one chart each.
  function drawCharts(box, ids) {
    if (!box) return;
    colorsFor(ids);
    const names = metricNames(ids);
    if (!ids.length) {
      fill(box, h('p', { class: 'muted', text: 'Tick runs in the table to draw their curves.' }));
      return;
    }
    if (!names.length) {
      fill(box, h('p', { class: 'muted', text: 'These runs have logged no metrics yet.' }));
      return;
    }
    const total = box.clientWidth || 1200;
    const cols = total >= 1000 ? 2 : 1;
    const width = (total - (cols - 1) * 16) / cols - 26;
    box.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
    fill(box, ...names.map((n) => chartCard(n, ids, width)));
  }

  function chartControls(redraw) {
    const log = h('input', { type: 'checkbox', checked: state.logY,
      onchange: (e) => { state.logY = e.target.checked; redraw(); } });
    const out = h('span', { class: 'mono', text: state.smoothing.toFixed(2) });
    const range = h('input', { type: 'range', min: 0, max: 0.99, step: 0.01, value: state.smoothing,
      oninput: (e) => { state.smoothing = +e.target.value; out.textContent = state.smoothing.toFixed(2); redraw(); } });
    return h('div', { class: 'controls' },
      h('label', {}, log, ' log y'), h('label', {}, 'smoothing ', range, out));
  }

  // ---- eval scores with error bars ---------------------------------------------------------
  // rows: [{key, values: [[value, stderr] | null per run]}]; runs: ids in the same order.
  function evalChart(rows, ids, width) {
    const W = Math.max(360, Math.floor(width));
    const bar = 14;
    const groupH = ids.length * (bar + 3) + 12;
    const m = { l: 190, r: 70, t: 24, b: 8 };
    const H = m.t + m.b + rows.length * groupH;
    const pw = W - m.l - m.r;
    let lo = 0;
    let hi = 0;
    for (const r of rows) {
      for (const v of r.values) {
        if (!v || !Number.isFinite(v[0])) continue;
        const se = Number.isFinite(v[1]) ? v[1] : 0;
        lo = Math.min(lo, v[0] - se); hi = Math.max(hi, v[0] + se);
      }
    }
    if (hi <= 1 && lo >= 0 && hi > 0.3) hi = 1; // accuracies: the whole 0..1 scale
    if (hi === lo) hi = lo + 1;
    const t = niceTicks(lo, hi, Math.max(2, Math.floor(pw / 80)));
    lo = Math.min(lo, t.ticks[0]);
    hi = Math.max(hi, t.ticks[t.ticks.length - 1]);
    const sx = (v) => m.l + ((v - lo) / (hi - lo)) * pw;
    const svg = s('svg', { class: 'chart evals', width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    const axes = s('g', { class: 'axis' });
    const grid = s('g', { class: 'grid' });
    for (const v of t.ticks) {
      grid.append(s('line', { x1: sx(v), x2: sx(v), y1: m.t, y2: H - m.b }));
      axes.append(s('text', { x: sx(v), y: m.t - 8, 'text-anchor': 'middle', text: fmtTick(v, t.step) }));
    }
    svg.append(grid, axes);
    rows.forEach((r, gi) => {
      const gy = m.t + gi * groupH + 6;
      const label = r.key.length > 28 ? `${r.key.slice(0, 27)}…` : r.key;
      svg.append(s('text', { class: 'label', x: m.l - 8, y: gy + (ids.length * (bar + 3)) / 2 + 2,
        'text-anchor': 'end' }, s('title', { text: r.key }), label));
      r.values.forEach((v, i) => {
        const y = gy + i * (bar + 3);
        if (!v || !Number.isFinite(v[0])) {
          svg.append(s('text', { class: 'value none', x: sx(0) + 4, y: y + bar - 3, text: 'no score' }));
          return;
        }
        const [val, se] = v;
        const a = sx(Math.min(0, val));
        const b = sx(Math.max(0, val));
        const g = s('g', { class: 'bar', 'data-run': ids[i], 'data-key': r.key, 'data-value': val,
          'data-stderr': Number.isFinite(se) ? se : '' });
        g.append(s('title', { text: `${ids[i]}: ${r.key} = ${fmt(val)}${Number.isFinite(se) ? ` ± ${fmt(se)}` : ''}` }));
        g.append(s('rect', { x: a, y, width: Math.max(1, b - a), height: bar, fill: colorOf(ids[i]), 'fill-opacity': 0.8 }));
        let end = b;
        if (Number.isFinite(se) && se > 0) {
          const e0 = sx(val - se);
          const e1 = sx(val + se);
          const cy = y + bar / 2;
          g.append(s('path', { class: 'errbar',
            d: `M${e0},${cy}H${e1}M${e0},${cy - 5}V${cy + 5}M${e1},${cy - 5}V${cy + 5}` }));
          end = Math.max(b, e1);
        }
        g.append(s('text', { class: 'value', x: end + 5, y: y + bar - 3,
          text: fmt(val) + (Number.isFinite(se) ? ` ±${fmt(se)}` : '') }));
        svg.append(g);
      });
    });
    axes.append(s('line', { x1: sx(0), x2: sx(0), y1: m.t, y2: H - m.b }));
    return svg;
  }

  // ---- shared bits -------------------------------------------------------------------------
  function statusBadge(status) {
    const cls = status === 'running' ? 'running' : status.startsWith('running') ? 'stale'
      : status === 'done' ? 'done' : status === 'failed' ? 'failed' : 'other';
    return h('span', { class: `badge ${cls}`, text: status });
  }
  const runLink = (id) => h('a', { class: 'mono', href: `#/run/${encodeURIComponent(id)}`, text: id });
  function errorBox(e) {
    return h('pre', { class: 'error', text: e.message || String(e) });
  }
  function section(title, ...kids) {
    return h('section', { class: 'panel' }, h('h2', { text: title }), kids);
  }
  function markFirstRender() {
    if (state.firstRender !== null) return;
    state.firstRender = performance.now();
    document.documentElement.setAttribute('data-first-render-ms', state.firstRender.toFixed(1));
  }

  // ---- the runs view -----------------------------------------------------------------------
  function runsHash() {
    const o = { where: state.where, sort: state.sort === '-created' ? '' : state.sort,
      page: state.page ? state.page + 1 : '' };
    let q = qs(o);
    if (state.selFromHash || state.sel.length) q += `${q ? '&' : ''}sel=${state.sel.map(encodeURIComponent).join(',')}`;
    return `#/${q ? `?${q}` : ''}`;
  }
  function saveHash() {
    state.runsHash = runsHash();
    history.replaceState(null, '', state.runsHash);
    $('nav-runs').setAttribute('href', state.runsHash);
    updateCompareLink();
  }
  function updateCompareLink() {
    const a = $('nav-compare');
    a.setAttribute('href', `#/compare?ids=${state.sel.map(encodeURIComponent).join(',')}`);
    a.textContent = state.sel.length ? `Compare (${state.sel.length})` : 'Compare';
  }

  const COLUMNS = [
    { key: 'id', label: 'run' },
    { key: 'experiment', label: 'experiment' },
    { key: 'stage', label: 'stage' },
    { key: 'status', label: 'status' },
    { key: null, label: 'step', cls: 'num' },
    { key: 'metric.loss', label: 'loss', cls: 'num' },
    { key: 'metric.eval_loss', label: 'eval_loss', cls: 'num' },
  ];

  function cellValue(v) {
    if (v === null || v === undefined) return '—';
    if (typeof v === 'number') return fmt(v);
    if (Array.isArray(v)) return v.join(', ');
    return String(v);
  }

  function renderTable(data, redrawCharts) {
    const cols = COLUMNS.concat(data.columns.map((k) => ({ key: k, label: k, cls: 'num' })),
      [{ key: 'created', label: 'created' }]);
    const sortKey = state.sort.replace(/^-/, '');
    const desc = state.sort.startsWith('-');
    const ids = data.runs.map((r) => r.id);
    colorsFor(state.sel);
    const all = h('input', { type: 'checkbox', title: 'select this page',
      checked: ids.length > 0 && ids.every((id) => state.sel.includes(id)),
      onchange: (e) => {
        if (e.target.checked) ids.forEach((id) => { if (!state.sel.includes(id)) state.sel.push(id); });
        else state.sel = state.sel.filter((id) => !ids.includes(id));
        selectionChanged(data, redrawCharts);
      } });
    const head = h('tr', {}, h('th', { class: 'sel' }, all), cols.map((c) => {
      if (!c.key) return h('th', { class: c.cls || '', text: c.label });
      const active = c.key === sortKey || (c.key === 'created' && sortKey === 'created_at');
      return h('th', { class: `${c.cls || ''} sortable${active ? ' sorted' : ''}`, title: `sort by ${c.key}`,
        'data-key': c.key,
        onclick: () => {
          state.sort = active && !desc ? `-${c.key}` : c.key;
          state.page = 0;
          loadTable(redrawCharts);
        } }, c.label, active ? h('span', { class: 'arrow', text: desc ? ' ▼' : ' ▲' }) : null);
    }));
    const body = h('tbody', {}, data.runs.map((r) => {
      state.status[r.id] = r.status;
      const selected = state.sel.includes(r.id);
      const box = h('input', { type: 'checkbox', checked: selected, 'data-run': r.id,
        onchange: (e) => {
          if (e.target.checked) state.sel.push(r.id); else state.sel = state.sel.filter((x) => x !== r.id);
          selectionChanged(data, redrawCharts);
        } });
      const step = r.step === null ? '—' : r.total_steps ? `${r.step} / ${r.total_steps}` : String(r.step);
      const progress = r.total_steps && r.step !== null
        ? h('span', { class: 'progress' }, h('span', { style: `width:${Math.min(100, (100 * r.step) / r.total_steps).toFixed(1)}%` }))
        : null;
      const metric = (n) => (r.metrics[n] ? fmt(r.metrics[n][1]) : '—');
      return h('tr', { 'data-run': r.id, 'data-status': r.status, class: selected ? 'selected' : '' },
        h('td', { class: 'sel' }, box, selected ? swatch(r.id) : h('span', { class: 'swatch off' })),
        h('td', {}, runLink(r.id), r.tags.map((t) => h('span', { class: 'tag', text: t }))),
        h('td', { text: r.experiment }),
        h('td', { text: r.stage }),
        h('td', {}, statusBadge(r.status)),
        h('td', { class: 'num step', 'data-step': r.step === null ? '' : r.step }, step, progress),
        h('td', { class: 'num', text: metric('loss') }),
        h('td', { class: 'num', text: metric('eval_loss') }),
        data.columns.map((k) => h('td', { class: 'num', text: cellValue(r.values[k]) })),
        h('td', { class: 'time', title: r.created, text: shortTime(r.created) }));
    }));
    if (!data.runs.length) {
      body.append(h('tr', {}, h('td', { colspan: cols.length + 1, class: 'muted empty-row',
        text: data.total ? 'No runs on this page.' : 'No runs match.' })));
    }
    return h('table', { class: 'runs', id: 'runs-table', 'data-total': data.total }, h('thead', {}, head), body);
  }

  function pager(data, redrawCharts) {
    const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    const from = data.total ? data.offset + 1 : 0;
    const to = data.offset + data.runs.length;
    const go = (p) => { state.page = p; loadTable(redrawCharts); };
    return h('div', { class: 'pager' },
      h('span', { class: 'muted', text: `${from}–${to} of ${data.total} run${data.total === 1 ? '' : 's'}` }),
      h('button', { type: 'button', disabled: state.page === 0, onclick: () => go(state.page - 1), text: '‹ prev' }),
      h('span', { text: `page ${state.page + 1} / ${pages}` }),
      h('button', { type: 'button', disabled: state.page + 1 >= pages, onclick: () => go(state.page + 1), text: 'next ›' }),
      h('span', { class: 'spacer' }),
      h('span', { class: 'muted', text: `${state.sel.length} selected` }),
      h('button', { type: 'button', disabled: !state.sel.length, text: 'clear',
        onclick: () => { state.sel = []; state.selFromHash = true; selectionChanged(data, redrawCharts); } }),
      h('button', { type: 'button', class: 'primary', disabled: state.sel.length < 2, text: 'compare selected',
        onclick: () => { location.hash = `#/compare?ids=${state.sel.map(encodeURIComponent).join(',')}`; } }));
  }

  let tableData = null;
  async function loadTable(redrawCharts) {
    const gen = state.gen;
    const errBox = $('where-error');
    let data;
    const asked = performance.now();
    try {
      data = await api(`/api/runs?${qs({ where: state.where, sort: state.sort, limit: PAGE_SIZE, offset: state.page * PAGE_SIZE })}`);
    } catch (e) {
      if (gen !== state.gen) return;
      if (e.status === 400) {
        errBox.textContent = e.message.trimEnd();
        errBox.hidden = false;
        $('where').classList.add('bad');
        if (tableData === null) {
          fill($('table-box'), h('p', { class: 'muted', text: 'No runs listed: the filter above does not parse.' }));
          fill($('pager'));
          await redrawCharts(false);
        }
        return;
      }
      throw e;
    }
    state.tableMs = performance.now() - asked;
    if (gen !== state.gen) return;
    errBox.hidden = true;
    $('where').classList.remove('bad');
    if (data.runs.length === 0 && state.page > 0 && data.total > 0) {
      state.page = Math.floor((data.total - 1) / PAGE_SIZE);
      return loadTable(redrawCharts);
    }
    if (!state.selFromHash && !state.sel.length && tableData === null) {
      state.sel = data.runs.slice(0, AUTO_SELECT).map((r) => r.id);
    }
    tableData = data;
    fill($('table-box'), renderTable(data, redrawCharts));
    fill($('pager'), pager(data, redrawCharts));
    saveHash();
    await redrawCharts(false);
  }

  function selectionChanged(data, redrawCharts) {
    fill($('table-box'), renderTable(data, redrawCharts));
    fill($('pager'), pager(data, redrawCharts));
    saveHash();
    redrawCharts(false).catch((e) => setLive(false, e));
  }

  function showRuns(q) {
    state.where = q.get('where') || '';
    state.sort = q.get('sort') || '-created';
    state.page = Math.max(0, (parseInt(q.get('page'), 10) || 1) - 1);
    if (q.has('sel')) {
      state.sel = (q.get('sel') || '').split(',').filter(Boolean);
      state.selFromHash = true;
    }
    tableData = null;
    const input = h('input', { id: 'where', type: 'search', value: state.where, spellcheck: 'false',
      autocomplete: 'off', placeholder: 'stage.pretrain.lr < 6e-3 and status = done' });
    const form = h('form', { class: 'filter', onsubmit: (e) => {
      e.preventDefault();
      state.where = input.value.trim();
      state.page = 0;
      loadTable(redraw).catch((err) => setLive(false, err));
    } },
    h('label', { for: 'where', text: 'where' }), input,
    h('button', { type: 'submit', class: 'primary', text: 'filter' }),
    h('button', { type: 'button', text: 'clear', onclick: () => { input.value = ''; form.requestSubmit(); } }));
    const charts = h('div', { class: 'charts', id: 'charts' });
    let drawn = null;
    async function redraw(force = true) {
      const gen = state.gen;
      await ensureSeries(state.sel);
      if (gen !== state.gen) return;
      // Redraw only when the curves changed (the table refreshes more often than they do).
      const sig = state.sel.join() + state.sel.map((id) => metricNames([id]).map((n) => {
        const sr = state.series[key(id, n)];
        return sr ? sr.points.length + ':' + (sr.points.length ? sr.points[sr.points.length - 1][0] : '') : '';
      }).join()).join('|');
      if (force || sig !== drawn) {
        drawn = sig;
        drawCharts(charts, state.sel);
      }
      markFirstRender();
    }
    const chartsHead = h('div', { class: 'panel-head' }, h('h2', { text: 'Curves' }),
      h('span', { class: 'muted', text: 'of the selected runs; hover for values' }),
      h('span', { class: 'spacer' }), chartControls(() => drawCharts(charts, state.sel)));
    fill($('app'),
      h('section', { class: 'panel' }, form,
        h('pre', { class: 'error', id: 'where-error', hidden: true }),
        h('p', { class: 'hint' }, 'Keys: config paths (', h('code', { text: 'seed' }), ', ',
          h('code', { text: 'model.hidden-size' }), ', ', h('code', { text: 'stage.pretrain.lr' }), '), ',
          h('code', { text: 'status' }), ', ', h('code', { text: 'stage' }), ', ', h('code', { text: 'experiment' }),
          ', ', h('code', { text: 'tag' }), ', ', h('code', { text: 'metric.NAME' }), ', ',
          h('code', { text: 'eval.TASK.METRIC' }), '; = != < <= > >= in (…), and / or / not — as ',
          h('code', { text: 'doge runs list --where' }), '.'),
        h('div', { class: 'table-wrap', id: 'table-box' }, h('p', { class: 'muted', text: 'Loading runs…' })),
        h('div', { id: 'pager' })),
      h('section', { class: 'panel' }, chartsHead, charts));
    loadTable(redraw).catch((e) => { fill($('table-box'), errorBox(e)); setLive(false, e); });
    every(POLL_MS, async () => {
      if (await pollSeries(state.sel)) await redraw(false);
    });
    every(tableInterval, () => loadTable(redraw));
    onResize(() => drawCharts(charts, state.sel));
  }

  // ---- one run -----------------------------------------------------------------------------
  function facts(pairs) {
    return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '')
      .map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)]));
  }

  function lineageView(run, lin) {
    const chain = lin.ancestors.map((a) => a);
    const node = (n, current) => h(current ? 'span' : 'a', {
      class: `node${current ? ' current' : ''}`, href: current ? null : `#/run/${encodeURIComponent(n.id)}`,
      title: `${n.stage} · ${n.status}`, 'data-run': n.id },
    h('span', { class: 'stage', text: n.stage }), h('span', { class: 'mono', text: n.id }), statusBadge(n.status));
    const parts = [];
    chain.forEach((a) => { parts.push(node(a, false), h('span', { class: 'arrow', text: '→' })); });
    parts.push(node({ id: run.id, stage: run.stage, status: run.status }, true));
    const kids = lin.descendants.filter((d) => d.parent_id === run.id);
    if (kids.length) parts.push(h('span', { class: 'arrow', text: '→' }));
    const tree = (parent) => {
      const children = lin.descendants.filter((d) => d.parent_id === parent);
      if (!children.length) return null;
      return h('ul', {}, children.map((c) => h('li', {}, node(c, false), tree(c.id))));
    };
    return h('div', { class: 'lineage' }, h('div', { class: 'chain' }, parts, kids.length ? h('div', { class: 'kids' }, tree(run.id)) : null),
      !chain.length && !kids.length ? h('p', { class: 'muted', text: 'No parent or child runs.' }) : null);
  }

  async function showRun(id) {
    const gen = state.gen;
    fill($('app'), h('p', { class: 'muted', text: `Loading ${id}…` }));
    let d;
    try { d = await api(`/api/runs/${encodeURIComponent(id)}`); } catch (e) {
      if (gen !== state.gen) return;
      fill($('app'), h('p', {}, h('a', { href: state.runsHash, text: '← runs' })), errorBox(e));
      if (e.body && e.body.candidates) {
        $('app').append(h('ul', {}, e.body.candidates.map((c) => h('li', {}, runLink(c)))));
      }
      return;
    }
    if (gen !== state.gen) return;
    const r = d.run;
    state.status[r.id] = r.status;
    colorsFor([r.id]);
    const charts = h('div', { class: 'charts', id: 'charts' });
    const selected = () => state.sel.includes(r.id);
    const toggle = h('button', { type: 'button', text: selected() ? 'remove from selection' : 'add to selection',
      onclick: () => {
        if (selected()) state.sel = state.sel.filter((x) => x !== r.id); else state.sel.push(r.id);
        state.selFromHash = true;
        state.runsHash = runsHash();
        $('nav-runs').setAttribute('href', state.runsHash);
        updateCompareLink();
        toggle.textContent = selected() ? 'remove from selection' : 'add to selection';
      } });
    const others = state.sel.filter((x) => x !== r.id);
    const end = r.ended_at || (isLive(r.status) ? d.now : r.heartbeat_at);
    const git = r.git_commit ? `${r.git_commit.slice(0, 12)}${r.git_dirty ? ' (dirty)' : ''}` : null;
    const evalRows = d.evals.map((e) => ({ key: `${e.task}.${e.metric}${e.checkpoint ? ` @${e.checkpoint.split('/').pop()}` : ''}`,
      values: [[e.value, e.stderr]] }));
    const redraw = async () => {
      await ensureSeries([r.id]);
      if (gen === state.gen) drawCharts(charts, [r.id]);
    };
    fill($('app'),
      h('p', { class: 'crumbs' }, h('a', { href: state.runsHash, text: '← runs' })),
      h('div', { class: 'run-head' }, swatch(r.id), h('h1', { class: 'mono', text: r.id }), statusBadge(r.status),
        h('span', { class: 'spacer' }), toggle,
        others.length ? h('a', { class: 'button', href: `#/compare?ids=${[...others, r.id].map(encodeURIComponent).join(',')}`,
          text: `compare with ${others.length} selected` }) : null),
      r.message ? h('pre', { class: 'error', text: r.message }) : null,
      h('div', { class: 'two' },
        section('Run', facts([
          ['experiment', r.experiment], ['sweep', r.sweep], ['stage', r.stage],
          ['status', statusBadge(r.status)],
          ['step', r.step === null ? '—' : `${r.step}${r.total_steps ? ` / ${r.total_steps}` : ''}`],
          ['metric rows', String(r.metric_rows)],
          ['host', r.host], ['device', r.device], ['git', git], ['version', r.version],
          ['tags', r.tags.length ? r.tags.map((t) => h('span', { class: 'tag', text: t })) : null],
          ['note', r.note], ['archived', r.archived ? 'yes' : null],
          ['experiment run', h('span', { class: 'mono', text: r.config_hash })],
        ])),
        section('Times', facts([
          ['created', r.created], ['started', r.started], ['ended', r.ended], ['heartbeat', r.heartbeat],
          ['duration', r.started_at ? duration(end - r.started_at) : null],
        ]))),
      section('Lineage', lineageView(r, d.lineage)),
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', { text: 'Curves' }),
        h('span', { class: 'spacer' }), chartControls(() => drawCharts(charts, [r.id]))), charts),
      section('Evals', d.evals.length ? [
        evalChart(evalRows, [r.id], Math.min(900, $('app').clientWidth - 40)),
        h('table', { class: 'plain' }, h('thead', {}, h('tr', {}, ['checkpoint', 'task', 'metric', 'value', 'stderr', 'n', 'fewshot']
          .map((c) => h('th', { text: c })))),
        h('tbody', {}, d.evals.map((e) => h('tr', {}, h('td', { class: 'mono', text: e.checkpoint || '—' }),
          h('td', { text: e.task }), h('td', { text: e.metric }), h('td', { class: 'num', text: fmt(e.value) }),
          h('td', { class: 'num', text: fmt(e.stderr) }), h('td', { class: 'num', text: e.n ?? '—' }),
          h('td', { class: 'num', text: e.fewshot ?? '—' }))))),
      ] : h('p', { class: 'muted', text: 'No eval scores recorded.' })),
      section('Artifacts', d.artifacts.length ? h('table', { class: 'plain' },
        h('thead', {}, h('tr', {}, ['kind', 'path', 'step', 'size', 'sha256', 'created'].map((c) => h('th', { text: c })))),
        h('tbody', {}, d.artifacts.map((a) => h('tr', {}, h('td', { text: a.kind }), h('td', { class: 'mono', text: a.path }),
          h('td', { class: 'num', text: a.step ?? '—' }), h('td', { class: 'num', text: a.size === null ? '—' : bytes(a.size) }),
          h('td', { class: 'mono', title: a.sha256 || '', text: a.sha256 ? a.sha256.slice(0, 12) : '—' }),
          h('td', { class: 'time', text: shortTime(a.created) })))))
        : h('p', { class: 'muted', text: 'No artifacts kept.' })),
      h('section', { class: 'panel' }, h('details', { open: true }, h('summary', { text: 'Config' }),
        h('pre', { class: 'config', text: JSON.stringify(r.config, null, 2) }))));
    await redraw();
    every(POLL_MS, async () => { if (await pollSeries([r.id])) drawCharts(charts, [r.id]); });
    onResize(() => drawCharts(charts, [r.id]));
  }

  function bytes(n) {
    const u = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${u[i]}`;
  }

  // ---- compare -----------------------------------------------------------------------------
  async function showCompare(ids) {
    const gen = state.gen;
    if (!ids.length) {
      fill($('app'), section('Compare', h('p', { class: 'muted' },
        'Tick two or more runs in the ', h('a', { href: state.runsHash, text: 'runs table' }), ', then “compare selected”.')));
      return;
    }
    fill($('app'), h('p', { class: 'muted', text: 'Loading…' }));
    let d;
    try { d = await api(`/api/compare?${qs({ ids: ids.join(',') })}`); } catch (e) {
      if (gen === state.gen) fill($('app'), h('p', {}, h('a', { href: state.runsHash, text: '← runs' })), errorBox(e));
      return;
    }
    if (gen !== state.gen) return;
    ids = d.ids;
    colorsFor(ids);
    d.runs.forEach((r) => { state.status[r.id] = r.status; });
    const charts = h('div', { class: 'charts', id: 'charts' });
    const remove = (id) => {
      const rest = ids.filter((x) => x !== id);
      location.hash = `#/compare?ids=${rest.map(encodeURIComponent).join(',')}`;
    };
    const headRow = (label) => h('tr', {}, h('th', { text: label }), d.runs.map((r) => h('th', { class: 'run-col' },
      swatch(r.id), runLink(r.id))));
    const diff = h('table', { class: 'plain diff', id: 'config-diff' }, h('thead', {}, headRow('key')),
      h('tbody', {}, d.config_diff.map((row) => h('tr', { 'data-key': row.key }, h('td', { class: 'mono key', text: row.key }),
        row.values.map((v, i) => h('td', { class: `mono${i > 0 && v !== row.values[0] ? ' differs' : ''}`,
          title: v ?? 'not set', text: configText(v) }))))));
    const metrics = h('table', { class: 'plain' }, h('thead', {}, headRow('metric (last)')),
      h('tbody', {}, d.metrics.map((row) => h('tr', {}, h('td', { class: 'mono key', text: row.name }),
        row.values.map((v) => h('td', { class: 'num', text: v ? `${fmt(v[1])} @${v[0]}` : '—' }))))));
    const evalTable = h('table', { class: 'plain' }, h('thead', {}, headRow('eval')),
      h('tbody', {}, d.evals.map((row) => h('tr', {}, h('td', { class: 'mono key', text: row.key }),
        row.values.map((v) => h('td', { class: 'num', text: v ? fmt(v[0]) + (Number.isFinite(v[1]) ? ` ± ${fmt(v[1])}` : '') : '—' }))))));
    fill($('app'),
      h('p', { class: 'crumbs' }, h('a', { href: state.runsHash, text: '← runs' })),
      h('div', { class: 'run-head' }, h('h1', { text: `Compare ${d.runs.length} runs` })),
      h('div', { class: 'chips' }, d.runs.map((r) => h('span', { class: 'chip', 'data-run': r.id }, swatch(r.id), runLink(r.id),
        h('span', { class: 'muted', text: r.stage }), statusBadge(r.status),
        h('button', { type: 'button', class: 'x', title: 'remove from the comparison', text: '×', onclick: () => remove(r.id) })))),
      section(`Config: ${d.config_diff.length} key${d.config_diff.length === 1 ? '' : 's'} differ`,
        d.config_diff.length ? diff : h('p', { class: 'muted', text: 'The configs are identical.' }),
        h('p', { class: 'muted', text: `${d.identical_keys} identical key${d.identical_keys === 1 ? '' : 's'} not shown.` })),
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', { text: 'Curves' }),
        h('span', { class: 'spacer' }), chartControls(() => drawCharts(charts, ids))), charts),
      section('Evals', d.evals.length ? [evalChart(d.evals, ids, Math.min(1000, $('app').clientWidth - 40)), evalTable]
        : h('p', { class: 'muted', text: 'None of these runs has eval scores.' })),
      section('Last metrics', metrics));
    await ensureSeries(ids);
    if (gen !== state.gen) return;
    drawCharts(charts, ids);
    every(POLL_MS, async () => { if (await pollSeries(ids)) drawCharts(charts, ids); });
    onResize(() => drawCharts(charts, ids));
  }

  // ---- navigation --------------------------------------------------------------------------
  let resizeHandler = null;
  function onResize(fn) {
    let t = null;
    resizeHandler = () => { clearTimeout(t); t = setTimeout(fn, 150); };
  }
  window.addEventListener('resize', () => resizeHandler && resizeHandler());

  function route() {
    stopTimers();
    resizeHandler = null;
    state.gen++;
    $('tooltip').hidden = true;
    const raw = location.hash.replace(/^#/, '') || '/';
    const [path, query] = raw.split('?');
    const q = new URLSearchParams(query || '');
    document.querySelectorAll('header nav a').forEach((a) => a.classList.remove('active'));
    if (path.startsWith('/run/')) {
      showRun(decodeURIComponent(path.slice(5)));
    } else if (path.startsWith('/compare')) {
      $('nav-compare').classList.add('active');
      showCompare((q.get('ids') || '').split(',').filter(Boolean));
    } else {
      $('nav-runs').classList.add('active');
      showRuns(q);
    }
  }

  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', (e) => {
    const input = $('where');
    if (e.key === '/' && input && document.activeElement !== input) { e.preventDefault(); input.focus(); }
  });
  api('/api/info').then((i) => {
    $('registry').textContent = `${i.registry} · ${i.runs} runs · doge ${i.version}`;
  }).catch((e) => setLive(false, e));
  route();
})();
