/* The console's pictures: a chart of the backups of the last 30 or 90 days (size as bars,
 * duration as points, failures marked), the next scheduled run and the storage use per target.
 *
 * Drawn as inline SVG with createElementNS and textContent: no library, no inline style or
 * handler, so the console's Content-Security-Policy stays as it is. console.js hands over its
 * API helpers in the 'dbbackup:open' event (the session stays in its closure) and says
 * 'dbbackup:changed' after a backup or a schedule change.
 */
(() => {
  'use strict';

  const SVG = 'http://www.w3.org/2000/svg';
  const W = 720;
  const H = 240;
  const PAD = { left: 64, right: 64, top: 16, bottom: 40 };
  const TARGET_TEXT = { local: 'Local folder', google_drive: 'Google Drive', gcs: 'Cloud Storage', s3: 'S3' };
  const $ = (id) => document.getElementById(id);
  let tools = null;
  let days = 30;
  let seq = 0;

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bytes(n) {
    if (n === null || n === undefined) return '—';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let value = n;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
  }

  function seconds(s) {
    if (s === null || s === undefined) return '—';
    return s >= 90 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(s < 10 ? 1 : 0)} s`;
  }

  function day(iso) {
    return tools.formatDate(iso).slice(0, 10);
  }

  /** The chart of ``history`` (GET api/history) into the #chart box. */
  function draw(history) {
    const box = $('chart');
    const since = Date.parse(history.since);
    const now = Date.parse(history.now);
    const points = history.attempts.map((a) => ({ ...a, t: Date.parse(a.started_at) }));
    const maxSize = Math.max(1, ...points.map((p) => p.file_size_bytes || 0));
    const maxTime = Math.max(1, ...points.map((p) => p.duration_seconds || 0));
    const plotW = W - PAD.left - PAD.right;
    const plotH = H - PAD.top - PAD.bottom;
    const x = (t) => PAD.left + ((t - since) / Math.max(1, now - since)) * plotW;
    const ySize = (v) => PAD.top + plotH - (v / maxSize) * plotH;
    const yTime = (v) => PAD.top + plotH - (v / maxTime) * plotH;
    const barW = Math.max(2, Math.min(14, (plotW / history.days) * 0.6));

    const root = svg('svg', {
      viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', class: 'chart-svg',
      'aria-labelledby': 'chart-title', 'aria-describedby': 'chart-desc',
    });
    root.append(svg('title', { id: 'chart-title' }, `Backups of the last ${history.days} days`));
    const ok = points.filter((p) => p.status === 'success').length;
    const failed = points.filter((p) => p.status === 'failed').length;
    root.append(svg('desc', { id: 'chart-desc' },
      `${points.length} attempts: ${ok} succeeded, ${failed} failed. Bars: stored size; points: duration.`));

    // Axes and their scale labels: size on the left, duration on the right, days below.
    const axes = svg('g', { class: 'axes' });
    axes.append(svg('line', { x1: PAD.left, y1: PAD.top + plotH, x2: W - PAD.right, y2: PAD.top + plotH }));
    axes.append(svg('line', { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH }));
    axes.append(svg('line', { x1: W - PAD.right, y1: PAD.top, x2: W - PAD.right, y2: PAD.top + plotH }));
    axes.append(svg('text', { x: PAD.left - 6, y: PAD.top + 4, 'text-anchor': 'end', class: 'size-label' }, bytes(maxSize)));
    axes.append(svg('text', { x: PAD.left - 6, y: PAD.top + plotH, 'text-anchor': 'end' }, '0'));
    axes.append(svg('text', { x: W - PAD.right + 6, y: PAD.top + 4, class: 'time-label' }, seconds(maxTime)));
    axes.append(svg('text', { x: W - PAD.right + 6, y: PAD.top + plotH }, '0 s'));
    axes.append(svg('text', { x: PAD.left, y: H - 18 }, day(history.since)));
    axes.append(svg('text', { x: W - PAD.right, y: H - 18, 'text-anchor': 'end' }, day(history.now)));
    root.append(axes);

    const bars = svg('g', { class: 'bars' });
    const marks = svg('g', { class: 'failures' });
    const lines = [[]]; // the duration line, broken where no backup succeeded for more than two days
    let last = null;
    const dots = svg('g', { class: 'points' });
    for (const p of points) {
      const cx = x(p.t);
      const when = tools.formatDate(p.started_at);
      if (p.status === 'success' && p.file_size_bytes !== null) {
        const top = ySize(p.file_size_bytes);
        const bar = svg('rect', {
          class: 'bar', x: cx - barW / 2, y: top, width: barW, height: Math.max(1, PAD.top + plotH - top),
          'data-id': p.id,
        });
        bar.append(svg('title', {}, `${when}: ${bytes(p.file_size_bytes)} in ${seconds(p.duration_seconds)}`));
        bars.append(bar);
      } else if (p.status === 'failed') {
        // A red cross on the baseline and a faint band up the plot: a failure is seen at a glance.
        const band = svg('rect', { class: 'failure-band', x: cx - barW / 2, y: PAD.top, width: barW, height: plotH });
        const cross = svg('path', {
          class: 'failure', 'data-id': p.id,
          d: `M${cx - 5},${PAD.top + plotH + 4}l10,10m0,-10l-10,10`,
        });
        cross.append(svg('title', {}, `${when}: failed${p.failure_reason ? ` (${p.failure_reason})` : ''}`));
        marks.append(band, cross);
      }
      if (p.duration_seconds !== null && p.status === 'success') {
        const cy = yTime(p.duration_seconds);
        if (last !== null && p.t - last > 2 * 86400000) lines.push([]);
        lines[lines.length - 1].push(`${cx.toFixed(1)},${cy.toFixed(1)}`);
        last = p.t;
        const dot = svg('circle', { class: 'point', cx, cy, r: 3.5, 'data-id': p.id });
        dot.append(svg('title', {}, `${when}: took ${seconds(p.duration_seconds)}`));
        dots.append(dot);
      }
    }
    root.append(marks, bars);
    for (const line of lines) {
      if (line.length > 1) root.append(svg('polyline', { class: 'duration', points: line.join(' ') }));
    }
    root.append(dots);
    if (!points.length) {
      root.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, 'No backups in this period'));
    }
    box.replaceChildren(root);
    $('chart-summary').textContent = `${points.length} attempt${points.length === 1 ? '' : 's'} in ${history.days} days:`
      + ` ${ok} succeeded, ${failed} failed.`;
    $('chart-summary').className = failed ? 'bad' : 'muted';
  }

  async function loadHistory() {
    const mine = ++seq;
    $('chart').setAttribute('aria-busy', 'true');
    try {
      const res = await tools.apiJson(`api/history?days=${days}`);
      if (mine !== seq) return;
      if (!res.ok) {
        $('chart-summary').textContent = `The history could not be loaded: ${tools.messageOf(res.body, res.status)}`;
        return;
      }
      draw(res.body);
    } finally {
      if (mine === seq) $('chart').removeAttribute('aria-busy');
    }
  }

  async function loadStorage() {
    const res = await tools.apiJson('api/storage');
    const list = $('storage-use');
    if (!res.ok) {
      list.textContent = 'unavailable';
      return;
    }
    const parts = res.body.targets.map((t) => {
      const name = TARGET_TEXT[t.target] || t.target;
      if (!t.available) return `${name}: not available`;
      return `${name}: ${bytes(t.used_bytes)} used${t.limit_bytes ? ` of ${bytes(t.limit_bytes)}` : ''}`;
    });
    list.textContent = parts.join(' · ');
  }

  async function loadNextRun() {
    const res = await tools.apiJson('api/config/schedule');
    $('next-run').textContent = res.ok && res.body.backup && res.body.backup.next_run
      ? `${tools.formatDate(res.body.backup.next_run)}${res.body.applied ? '' : ' (not applied to a scheduler)'}`
      : '—';
  }

  function refresh() {
    tools.guarded(loadHistory);
    tools.guarded(loadNextRun);
  }

  function wire() {
    for (const button of document.querySelectorAll('#history-days [data-days]')) {
      button.addEventListener('click', () => {
        days = Number(button.dataset.days);
        for (const b of document.querySelectorAll('#history-days [data-days]')) {
          b.setAttribute('aria-pressed', b === button ? 'true' : 'false');
        }
        tools.guarded(loadHistory);
      });
    }
  }

  document.addEventListener('dbbackup:open', (event) => {
    const first = tools === null;
    tools = event.detail;
    if (first) wire();
    refresh();
    tools.guarded(loadStorage);
  });
  document.addEventListener('dbbackup:changed', () => { if (tools) refresh(); });
})();
