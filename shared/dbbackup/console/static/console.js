/* The managers' backup console: plain JavaScript, no build step, no third-party code.
 *
 * Rules this file keeps (the function's Content-Security-Policy enforces most of them):
 * - no inline handlers or styles: every listener is attached here, DOM built with textContent;
 * - the Supabase session lives in this closure only (never localStorage, cookies, the DOM or a
 *   URL), so closing the tab signs out and a script injected elsewhere has nothing to read;
 * - every API URL is relative, so the page works under whatever prefix serves the function.
 */
(() => {
  'use strict';

  const PER_PAGE = 20;
  // Refresh this long before the access token expires (at most half its lifetime, so a short
  // lifetime still refreshes in time), and never use a token closer than SKEW_MS to expiry.
  const REFRESH_MARGIN_MS = 60000;
  const SKEW_MS = 5000;
  const TOAST_MS = 8000;

  const $ = (id) => document.getElementById(id);

  /** Raised when the session is gone: the view has already switched, callers just stop. */
  class AuthLost extends Error {}

  let config = null; // GET api/client-config
  let session = null; // {accessToken, refreshToken, expiresAtMs, email}
  let refreshTimer = 0;
  let refreshing = null;
  let logsSeq = 0;
  let running = false;
  const query = { status: 'all', type: 'all', range: 'all', from: '', to: '', sort: 'started_at', order: 'desc', page: 1 };
  const current = { backup_folder_path: '', backup_notification_email: '' };

  // ---- small helpers -------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = value;
      else if (key === 'className') node.className = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (_) {
      return {};
    }
  }

  /** A one-line message out of an error body of ours ({error}) or of Supabase Auth
   *  ({msg}, {error_description}, {message}). */
  function messageOf(body, status) {
    if (body && typeof body === 'object') {
      for (const key of ['error_description', 'msg', 'message', 'error']) {
        if (typeof body[key] === 'string' && body[key]) return body[key];
      }
    }
    return `The server answered ${status}.`;
  }

  let dateFormat = null;
  function formatDate(iso) {
    if (!iso) return '—';
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    if (!dateFormat) {
      const options = {
        year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
        second: '2-digit', hourCycle: 'h23', timeZoneName: 'short',
      };
      try {
        dateFormat = new Intl.DateTimeFormat('en-GB', { ...options, timeZone: (config && config.timezone) || 'UTC' });
      } catch (_) { // an unknown zone name: UTC, labelled as such, rather than a broken page
        dateFormat = new Intl.DateTimeFormat('en-GB', { ...options, timeZone: 'UTC' });
      }
    }
    const parts = Object.fromEntries(dateFormat.formatToParts(date).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${parts.timeZoneName || ''}`.trim();
  }

  const STATUS_TEXT = { success: 'Success', failed: 'Failed', in_progress: 'In progress' };
  const TYPE_TEXT = { automatic: 'Automatic', manual: 'Manual' };
  const TARGET_TEXT = { local: 'Local folder', google_drive: 'Google Drive', gcs: 'Cloud Storage', s3: 'S3' };
  const COLUMNS = ['Date & Time', 'Type', 'Status', 'File Name', 'File Size', 'Google Drive Path', 'Failure Reason'];

  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = el('a', { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function filenameFrom(disposition, fallback) {
    const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition || '');
    if (!match) return fallback;
    try {
      return decodeURIComponent(match[1]);
    } catch (_) {
      return match[1];
    }
  }

  // ---- toasts --------------------------------------------------------------------------------

  /** ``sticky``: stays until replaced (``settle``) or dismissed, e.g. while a backup runs. */
  function toast(kind, text, sticky = false) {
    const box = $('toasts');
    const close = el('button', { type: 'button', 'aria-label': 'Dismiss notification', text: '×' });
    const data = sticky ? { kind, sticky: 'true' } : { kind };
    const item = el('div', { className: `toast ${kind}`, dataset: data }, el('span', { text }), close);
    close.addEventListener('click', () => item.remove());
    box.append(item);
    while (box.children.length > 4) (box.querySelector('.toast:not([data-sticky])') || box.firstElementChild).remove();
    // Errors stay until dismissed: a reason that vanishes before it is read helps nobody.
    if (kind !== 'error' && !sticky) setTimeout(() => item.remove(), TOAST_MS);
    return item;
  }

  /** The result in the place of a sticky toast (which goes, whatever happened to it). */
  function settle(sticky, kind, text) {
    const item = toast(kind, text);
    if (sticky.isConnected) sticky.replaceWith(item);
    return item;
  }

  // ---- views ---------------------------------------------------------------------------------

  const VIEWS = ['booting', 'signin', 'noaccess', 'fatal', 'console'];

  function showView(name) {
    for (const view of VIEWS) $(view).hidden = view !== name;
    document.documentElement.dataset.view = name;
  }

  function fatal(text) {
    $('fatal-text').textContent = text;
    showView('fatal');
  }

  function showWho(text, canSignOut) {
    $('who').hidden = !text;
    $('who-text').textContent = text || '';
    $('sign-out').hidden = !canSignOut;
  }

  function closeDialogs() {
    for (const dialog of document.querySelectorAll('dialog')) if (dialog.open) dialog.close();
  }

  function showSignIn(message) {
    closeDialogs();
    showWho('', false);
    $('logs-body').replaceChildren(); // nothing of the last session stays on screen
    $('signin-password').value = '';
    const error = $('signin-error');
    error.hidden = !message;
    error.textContent = message || '';
    showView('signin');
    $('signin-email').focus();
  }

  // ---- Supabase Auth (REST token endpoint) ---------------------------------------------------

  function authBase() {
    return String(config.supabase_url).replace(/\/+$/, '') + '/auth/v1';
  }

  async function tokenRequest(grant, body) {
    const response = await fetch(`${authBase()}/token?grant_type=${grant}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', apikey: config.supabase_anon_key },
      body: JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
    return { response, body: await readJson(response) };
  }

  function setSession(body, email) {
    if (!body || typeof body.access_token !== 'string' || typeof body.refresh_token !== 'string') {
      throw new Error('Supabase Auth answered without a session.');
    }
    // expires_in is relative, so a skewed client clock does not matter; expires_at (absolute,
    // server clock) only when expires_in is missing.
    let lifetimeMs = Number(body.expires_in) * 1000;
    if (!(lifetimeMs > 0)) lifetimeMs = Number(body.expires_at) * 1000 - Date.now();
    if (!(lifetimeMs > 0)) lifetimeMs = 3600 * 1000;
    session = {
      accessToken: body.access_token,
      refreshToken: body.refresh_token,
      expiresAtMs: Date.now() + lifetimeMs,
      email: (body.user && body.user.email) || email || '',
    };
    scheduleRefresh(lifetimeMs - Math.min(REFRESH_MARGIN_MS, lifetimeMs / 2));
  }

  function scheduleRefresh(delayMs) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      refresh().catch(() => {}); // failures are handled (and shown) inside
    }, Math.max(500, delayMs));
  }

  /** One refresh at a time: concurrent callers share it (a refresh token is single-use). */
  function refresh() {
    if (!refreshing) refreshing = doRefresh().finally(() => { refreshing = null; });
    return refreshing;
  }

  async function doRefresh() {
    const before = session;
    if (!before) throw new AuthLost('not signed in');
    let answer;
    try {
      answer = await tokenRequest('refresh_token', { refresh_token: before.refreshToken });
    } catch (_) {
      // Network trouble: keep the session and try again soon; the access token may still be valid.
      scheduleRefresh(5000);
      throw new Error('Supabase Auth could not be reached to renew the session.');
    }
    if (session !== before) return; // signed out (or in again) meanwhile
    const { response, body } = answer;
    if (response.ok) {
      setSession(body, before.email);
      return;
    }
    if (response.status >= 500 || response.status === 429) {
      scheduleRefresh(5000);
      throw new Error(messageOf(body, response.status));
    }
    endSession();
    showSignIn(`Your session has ended (${messageOf(body, response.status)}). Please sign in again.`);
    throw new AuthLost('refresh refused');
  }

  function endSession() {
    clearTimeout(refreshTimer);
    session = null;
  }

  async function signOut() {
    const old = session;
    endSession();
    if (old) {
      // Best effort: revoke this session's refresh token at Supabase; signing out locally does not
      // wait for it and does not depend on it.
      fetch(`${authBase()}/logout?scope=local`, {
        method: 'POST',
        headers: { apikey: config.supabase_anon_key, Authorization: `Bearer ${old.accessToken}` },
        cache: 'no-store',
        credentials: 'omit',
        keepalive: true,
      }).catch(() => {});
    }
    showSignIn('');
  }

  // ---- our API -------------------------------------------------------------------------------

  /** fetch with the session's token; renews it first when close to expiry and once after a 401. */
  async function api(path, options = {}) {
    const headers = { Accept: options.accept || 'application/json' };
    if (options.json !== undefined) headers['Content-Type'] = 'application/json';
    for (let attempt = 0; ; attempt += 1) {
      if (session) {
        if (Date.now() > session.expiresAtMs - SKEW_MS) await refresh();
        headers.Authorization = `Bearer ${session.accessToken}`;
      }
      const response = await fetch(path, {
        method: options.method || 'GET',
        headers,
        body: options.json === undefined ? undefined : JSON.stringify(options.json),
        cache: 'no-store',
        credentials: 'same-origin',
      });
      if (response.status === 401 && session && attempt === 0) {
        await refresh();
        continue;
      }
      if (response.status === 401 && config.auth_mode !== 'disabled') {
        endSession();
        showSignIn('Your session is no longer valid. Please sign in again.');
        throw new AuthLost('401');
      }
      if (response.status === 403 && !options.allow403) {
        showNoAccess(messageOf(await readJson(response), 403));
        throw new AuthLost('403');
      }
      return response;
    }
  }

  async function apiJson(path, options) {
    const response = await api(path, options);
    return { ok: response.ok, status: response.status, body: await readJson(response), response };
  }

  /** Runs an action; a lost session was already handled, anything else becomes an error toast. */
  async function guarded(action) {
    try {
      await action();
    } catch (error) {
      if (!(error instanceof AuthLost)) toast('error', error && error.message ? error.message : String(error));
    }
  }

  // ---- entering the console ------------------------------------------------------------------

  function showNoAccess(detail) {
    closeDialogs();
    $('logs-body').replaceChildren();
    const text = $('noaccess-text');
    text.textContent = 'Your account is signed in, but it is not a manager or administrator account, so it cannot'
      + ' see or change the database backups. Ask an administrator if you need access.';
    if (detail) text.append(el('span', { className: 'muted', text: ` (${detail})` }));
    $('noaccess-sign-out').hidden = !session;
    showWho(session ? `Signed in as ${session.email}` : '', Boolean(session));
    showView('noaccess');
    $('noaccess-title').setAttribute('tabindex', '-1');
    $('noaccess-title').focus({ preventScroll: true });
  }

  async function enter() {
    const me = await apiJson('api/me', { allow403: true });
    if (me.status === 403) {
      showNoAccess(messageOf(me.body, 403));
      return;
    }
    if (!me.ok) {
      fatal(`The console could not check your access: ${messageOf(me.body, me.status)}`);
      return;
    }
    const role = me.body.role;
    if (role === 'auth-disabled') showWho('Authentication is disabled on this deployment', false);
    else showWho(`Signed in as ${session ? session.email : me.body.subject} · ${role}`, true);
    showView('console');
    $('main').focus({ preventScroll: true });
    // chart.js and schedule.js draw their parts with these helpers (the session stays here).
    document.dispatchEvent(new CustomEvent('dbbackup:open', { detail: { apiJson, messageOf, toast, formatDate, guarded } }));
    await Promise.all([guarded(loadConfig), guarded(loadStatus)]); // the console is open: errors become toasts
  }

  async function loadConfig() {
    const res = await apiJson('api/config');
    if (!res.ok) {
      toast('error', `Could not load the settings: ${messageOf(res.body, res.status)}`);
      return;
    }
    current.backup_folder_path = res.body.backup_folder_path || '';
    current.backup_notification_email = res.body.backup_notification_email || '';
    $('cfg-folder').textContent = current.backup_folder_path || '(not set)';
    $('cfg-email').textContent = current.backup_notification_email || '(not set)';
  }

  async function loadStatus() {
    const res = await apiJson('api/status');
    if (!res.ok) {
      $('st-last').textContent = 'unavailable';
      return;
    }
    const s = res.body;
    $('st-last').textContent = s.last_success_at ? formatDate(s.last_success_at) : 'never';
    const failures = Number(s.consecutive_failures || 0);
    $('st-failures').textContent = String(failures);
    $('st-failures').className = failures > 0 ? 'bad' : 'good';
    const rate = s.success_rate_7d;
    $('st-rate').textContent = rate === null || rate === undefined
      ? 'no attempts'
      : `${rate} %${s.attempts_7d !== undefined ? ` of ${s.attempts_7d}` : ''}`;
    // The weekly restore drill: its verdict, the backup it restored and how old that backup is.
    if (s.last_verified_at) {
      const days = s.last_verified_backup_age_hours === null ? '' : ` · backup ${(s.last_verified_backup_age_hours / 24).toFixed(1)} days old`;
      $('st-drill').textContent = `${s.last_verify_status} ${formatDate(s.last_verified_at)} · ${s.last_verified_file || ''}${days}`;
      $('st-drill').className = s.last_verify_status === 'failed' ? 'bad' : s.last_verify_status === 'passed' ? 'good' : '';
    } else {
      $('st-drill').textContent = 'never';
    }
    const r = s.retention;
    if (r) {
      const parts = [`${r.retention_days} days`, `newest ${r.keep_min} always`];
      if (r.keep_weekly) parts.push(`${r.keep_weekly} weekly`);
      if (r.keep_monthly) parts.push(`${r.keep_monthly} monthly`);
      $('st-retention').textContent = parts.join(' · ');
    }
  }

  async function showContents(row) {
    const res = await apiJson(`api/backups/${encodeURIComponent(row.id)}`);
    if (!res.ok) {
      toast('error', `Could not read the contents of ${row.file_name}: ${messageOf(res.body, res.status)}`);
      return;
    }
    const b = res.body;
    const tables = (b.manifest && b.manifest.tables) || null;
    const names = tables ? Object.keys(tables).sort() : [];
    const total = names.reduce((sum, n) => sum + Number(tables[n].rows || 0), 0);
    $('contents-title').textContent = `Contents of ${b.file_name}`;
    $('contents-summary').textContent = tables
      ? `${names.length} tables, ${total.toLocaleString()} rows`
        + (b.verify_status ? ` · restore drill: ${b.verify_status} ${formatDate(b.verified_at)}` : '')
      : 'No manifest: this backup was taken before contents were recorded.';
    $('contents-warnings').replaceChildren(...(b.shrink_warnings || []).map((w) => el('li', { className: 'bad', text: w })));
    $('contents-body').replaceChildren(...names.map((n) => el('tr', {},
      el('td', { text: n }),
      el('td', { className: 'size', text: Number(tables[n].rows).toLocaleString() }),
      el('td', { className: 'size', text: Number(tables[n].bytes).toLocaleString() }))));
    openDialog($('contents-dialog'), null);
  }

  // ---- dialogs -------------------------------------------------------------------------------

  function openDialog(dialog, focusTarget) {
    const opener = document.activeElement;
    dialog.addEventListener('close', () => {
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    }, { once: true });
    dialog.showModal(); // modal: focus moves in, Escape closes, the page behind is inert
    if (focusTarget) focusTarget.focus();
  }

  // ---- backup logs ---------------------------------------------------------------------------

  function filterParams() {
    const params = new URLSearchParams();
    if (query.status !== 'all') params.set('status', query.status);
    if (query.type !== 'all') params.set('type', query.type);
    if (query.range === 'custom') {
      if (query.from) params.set('from', query.from);
      if (query.to) params.set('to', query.to);
    } else if (query.range !== 'all') {
      params.set('range', query.range);
    }
    return params;
  }

  function showFiltersError(text) {
    $('filters-error').hidden = !text;
    $('filters-error').textContent = text || '';
  }

  async function loadLogs() {
    const seq = ++logsSeq;
    const params = filterParams();
    params.set('sort', query.sort);
    params.set('order', query.order);
    params.set('page', String(query.page));
    params.set('per_page', String(PER_PAGE));
    $('logs-table').setAttribute('aria-busy', 'true');
    try {
      const res = await apiJson(`api/logs?${params}`);
      if (seq !== logsSeq) return; // a newer request was made meanwhile
      if (!res.ok) {
        showFiltersError(messageOf(res.body, res.status));
        return;
      }
      showFiltersError('');
      renderLogs(res.body);
    } finally {
      if (seq === logsSeq) $('logs-table').removeAttribute('aria-busy');
    }
  }

  function renderLogs(page) {
    const rows = (page.items || []).map(logRow);
    if (!rows.length) {
      rows.push(el('tr', {}, el('td', { colspan: 7, className: 'empty', text: 'No backups match these filters.' })));
    }
    $('logs-body').replaceChildren(...rows);
    query.page = page.page || 1;
    const pages = Math.max(1, page.pages || 1);
    const total = page.total || 0;
    $('logs-summary').textContent = `Page ${query.page} of ${pages} · ${total} backup${total === 1 ? '' : 's'}`;
    $('page-prev').disabled = query.page <= 1;
    $('page-next').disabled = query.page >= pages;
    for (const th of document.querySelectorAll('#logs-table th[data-sort]')) {
      const active = th.dataset.sort === query.sort;
      th.setAttribute('aria-sort', active ? (query.order === 'asc' ? 'ascending' : 'descending') : 'none');
    }
  }

  function logRow(row) {
    const deleted = Boolean(row.deleted);
    const badge = el('span', { className: `badge ${row.status}`, text: STATUS_TEXT[row.status] || row.status });
    let status;
    if (row.status === 'success' && !deleted) {
      // A backup that exists opens what it holds (its manifest) from its status.
      const contents = el('button', {
        type: 'button', className: 'link contents', title: 'Show what this backup holds',
        'aria-label': `Contents of ${row.file_name}`,
      }, badge);
      contents.addEventListener('click', () => guarded(() => showContents(row)));
      status = el('td', { className: 'state' }, contents);
    } else {
      status = el('td', { className: 'state' }, badge);
    }
    if (deleted) status.append(el('span', { className: 'badge deleted', text: 'Deleted' }));
    if ((row.copies || []).length > 1) {
      // Several targets: where each copy is (a failed attempt may still hold complete copies).
      const copies = el('ul', { className: 'copies', 'aria-label': 'Copies' });
      for (const copy of row.copies) {
        const state = copy.deleted ? 'deleted' : copy.status === 'success' ? 'complete' : 'failed';
        copies.append(el('li', { className: `copy ${state}`, text: `${TARGET_TEXT[copy.target] || copy.target}: ${state}` }));
      }
      status.append(copies);
    }

    let file;
    if (row.downloadable) {
      const button = el('button', {
        type: 'button', className: 'link download', text: row.file_name, 'aria-label': `Download ${row.file_name}`,
      });
      button.addEventListener('click', () => guarded(() => download(row, button)));
      file = el('td', { className: 'file' }, button);
    } else {
      file = el('td', { className: 'file' }, el('span', { className: 'file', text: row.file_name }));
      if (deleted) file.append(el('span', { className: 'visually-hidden', text: ' (deleted, not downloadable)' }));
    }
    if (row.encrypted) {
      // A lock before the name; the download is the .age file, and this is how to open it.
      file.prepend(el('span', { className: 'lock', text: '🔒', title: 'Encrypted with age', 'aria-label': 'Encrypted with age' }));
      if (row.downloadable && row.decrypt_command) {
        file.append(el('code', { className: 'decrypt', text: row.decrypt_command, title: 'Decrypt and restore the download' }));
      }
    }

    let drive;
    const path = row.status === 'failed' ? '' : row.google_drive_path || ''; // a failed attempt stored nothing
    if (row.drive_url && !deleted && /^https:\/\//.test(row.drive_url)) {
      drive = el('td', {}, el('a', {
        href: row.drive_url, target: '_blank', rel: 'noopener noreferrer', text: path || 'Open in Drive',
        'aria-label': `Open ${path || row.file_name} in Google Drive (new tab)`,
      }));
    } else {
      drive = el('td', { text: path || '—' });
    }

    const size = el('td', { className: 'size', text: row.file_size_human || '—' });
    const cells = [
      el('td', { className: 'when', text: formatDate(row.started_at) }),
      el('td', { className: 'kind', text: TYPE_TEXT[row.backup_type] || row.backup_type }),
      status,
      file,
      size,
      drive,
      el('td', { className: 'reason', text: row.status === 'failed' ? (row.failure_reason || '') : '' }),
    ];
    // The column names, for the phone layout where each row is a card (CSS shows data-label).
    cells.forEach((cell, n) => { cell.dataset.label = COLUMNS[n]; });
    const tr = el('tr', { className: deleted ? 'deleted' : '', dataset: { id: row.id, status: row.status } }, ...cells);
    for (const module of modules) if (module.row) module.row(row, tr);
    return tr;
  }

  async function download(row, button) {
    button.disabled = true;
    toast('info', `Downloading ${row.file_name}…`);
    try {
      const accept = row.encrypted ? 'application/octet-stream' : 'application/gzip';
      const response = await api(`api/backups/${encodeURIComponent(row.id)}/download`, { accept });
      if (!response.ok) {
        toast('error', `Could not download ${row.file_name}: ${messageOf(await readJson(response), response.status)}`);
        return;
      }
      const blob = await response.blob();
      saveBlob(blob, filenameFrom(response.headers.get('Content-Disposition'), row.file_name));
    } finally {
      button.disabled = false;
    }
  }

  async function exportCsv() {
    const button = $('export-csv');
    button.disabled = true;
    try {
      const response = await api(`api/logs.csv?${filterParams()}`, { accept: 'text/csv' });
      if (!response.ok) {
        toast('error', `Could not export: ${messageOf(await readJson(response), response.status)}`);
        return;
      }
      const blob = await response.blob();
      saveBlob(blob, filenameFrom(response.headers.get('Content-Disposition'), 'backup_logs.csv'));
    } finally {
      button.disabled = false;
    }
  }

  function openLogs() {
    openDialog($('logs-dialog'), $('f-status'));
    guarded(loadLogs);
  }

  function wireLogs() {
    $('open-logs').addEventListener('click', openLogs);
    $('f-status').addEventListener('change', (e) => { query.status = e.target.value; query.page = 1; guarded(loadLogs); });
    $('f-type').addEventListener('change', (e) => { query.type = e.target.value; query.page = 1; guarded(loadLogs); });
    $('f-range').addEventListener('change', (e) => {
      query.range = e.target.value;
      const custom = query.range === 'custom';
      $('f-custom').hidden = !custom;
      if (custom) {
        $('f-from').focus(); // wait for the dates and Apply
        return;
      }
      query.from = '';
      query.to = '';
      query.page = 1;
      guarded(loadLogs);
    });
    $('filters').addEventListener('submit', (e) => {
      e.preventDefault();
      if (query.range !== 'custom') return;
      const from = $('f-from').value;
      const to = $('f-to').value;
      if (!from && !to) {
        showFiltersError('Choose a start date, an end date, or both.');
        $('f-from').focus();
        return;
      }
      if (from && to && from > to) {
        showFiltersError('The start date is after the end date.');
        $('f-from').focus();
        return;
      }
      query.from = from;
      query.to = to;
      query.page = 1;
      guarded(loadLogs);
    });
    for (const button of document.querySelectorAll('[data-sort-button]')) {
      button.addEventListener('click', () => {
        const key = button.dataset.sortButton;
        if (query.sort === key) query.order = query.order === 'asc' ? 'desc' : 'asc';
        else {
          query.sort = key;
          query.order = key === 'status' ? 'asc' : 'desc';
        }
        query.page = 1;
        guarded(loadLogs);
      });
    }
    $('page-prev').addEventListener('click', () => { query.page = Math.max(1, query.page - 1); guarded(loadLogs); });
    $('page-next').addEventListener('click', () => { query.page += 1; guarded(loadLogs); });
    $('export-csv').addEventListener('click', () => guarded(exportCsv));
  }

  // ---- settings ------------------------------------------------------------------------------

  const EDITS = {
    backup_folder_path: {
      title: 'Backup Folder Path',
      label: 'Google Drive folder',
      hint: 'Folders separated by "/", e.g. MyDrive/DatabaseBackups, or id:<folder id>.',
      type: 'text',
      check(value) {
        if (!value.trim()) return 'Enter a folder path.';
        if (value.startsWith('id:')) return '';
        const segments = value.replace(/^\/+|\/+$/g, '').split('/');
        if (segments.some((s) => s === '')) return 'The path has an empty folder name (//).';
        if (segments.some((s) => s === '.' || s === '..')) return 'The path may not contain "." or "..".';
        return ''; // the server checks the rest and its message is shown as is
      },
      saved: 'Backup folder path saved.',
    },
    backup_notification_email: {
      title: 'Notification Email',
      label: 'E-mail address for backup alerts',
      hint: 'Failure and warning alerts are sent to this address.',
      type: 'email',
      check(value) {
        const v = value.trim();
        if (!v) return 'Enter an e-mail address.';
        if (!/^[^\s@]+@[^\s@]+$/.test(v)) return 'Enter an e-mail address like ops@example.com.';
        return '';
      },
      saved: 'Notification e-mail saved.',
    },
  };
  let editing = null;

  function setEditError(text) {
    const input = $('edit-value');
    $('edit-error').hidden = !text;
    $('edit-error').textContent = text || '';
    if (text) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  function openEdit(key) {
    const spec = EDITS[key];
    editing = key;
    $('edit-title').textContent = `Edit ${spec.title}`;
    $('edit-label').textContent = spec.label;
    $('edit-hint').textContent = spec.hint;
    const input = $('edit-value');
    input.type = spec.type;
    input.value = current[key] || '';
    setEditError('');
    $('edit-save').disabled = false;
    openDialog($('edit-dialog'), input);
    input.select();
  }

  async function saveEdit() {
    const key = editing;
    const spec = EDITS[key];
    const input = $('edit-value');
    const value = key === 'backup_notification_email' ? input.value.trim() : input.value;
    const problem = spec.check(value);
    if (problem) {
      setEditError(problem);
      input.focus();
      return;
    }
    $('edit-save').disabled = true;
    try {
      const res = await apiJson(`api/config/${key}`, { method: 'PUT', json: { value } });
      if (!res.ok) {
        setEditError(messageOf(res.body, res.status));
        input.focus();
        return;
      }
      current[key] = res.body.value;
      $(key === 'backup_folder_path' ? 'cfg-folder' : 'cfg-email').textContent = res.body.value;
      $('edit-dialog').close();
      toast('success', spec.saved);
    } finally {
      $('edit-save').disabled = false;
    }
  }

  // ---- run backup now ------------------------------------------------------------------------

  function setRunning(on) {
    running = on;
    const button = $('run-backup');
    button.disabled = on;
    button.setAttribute('aria-busy', on ? 'true' : 'false');
    $('run-spinner').hidden = !on;
    $('run-label').textContent = on ? 'Backup running…' : 'Run Backup';
  }

  async function runBackup() {
    if (running) return;
    setRunning(true);
    // Stays while the backup runs (however long), then the result takes its place.
    const progress = toast('info', 'Backup in progress…', true);
    try {
      const res = await apiJson('api/backups', { method: 'POST', json: {} });
      const b = res.body || {};
      if (res.ok && b.status === 'success') {
        const seconds = typeof b.seconds === 'number' ? ` in ${b.seconds.toFixed(1)} s` : '';
        settle(progress, 'success', `Backup completed: ${b.file_name}${seconds}.`);
      } else if (res.status === 409) {
        settle(progress, 'error', `A backup is already running: ${messageOf(b, 409)}`);
      } else if (res.status === 429) {
        const wait = res.response.headers.get('Retry-After');
        settle(progress, 'error', `Too many manual backups: ${messageOf(b, 429)}${wait ? ` Try again in ${wait} s.` : ''}`);
      } else {
        settle(progress, 'error', `Backup failed: ${b.failure_reason || messageOf(b, res.status)}`);
      }
    } finally {
      progress.remove(); // already replaced, or the request itself failed (its error toast follows)
      setRunning(false);
    }
    document.dispatchEvent(new CustomEvent('dbbackup:changed'));
    await loadStatus();
    if ($('logs-dialog').open) await loadLogs();
  }

  // ---- start ---------------------------------------------------------------------------------

  async function submitSignIn(event) {
    event.preventDefault();
    const email = $('signin-email').value.trim();
    const password = $('signin-password').value;
    const error = $('signin-error');
    if (!email || !password) {
      error.textContent = 'Enter your e-mail and password.';
      error.hidden = false;
      return;
    }
    const submit = $('signin-submit');
    submit.disabled = true;
    error.hidden = true;
    try {
      let answer;
      try {
        answer = await tokenRequest('password', { email, password });
      } catch (_) {
        throw new Error('Supabase Auth could not be reached. Check your connection and try again.');
      }
      if (!answer.response.ok) throw new Error(messageOf(answer.body, answer.response.status));
      setSession(answer.body, email);
      $('signin-password').value = '';
      await enter();
    } catch (e) {
      if (e instanceof AuthLost) return;
      error.textContent = e.message;
      error.hidden = false;
      $('signin-password').focus();
    } finally {
      submit.disabled = false;
    }
  }

  async function boot() {
    showView('booting');
    try {
      const response = await fetch('api/client-config', { headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (!response.ok) throw new Error(messageOf(await readJson(response), response.status));
      config = await response.json();
      dateFormat = null;
    } catch (e) {
      fatal(`The console could not load its configuration: ${e.message}`);
      return;
    }
    $('auth-banner').hidden = config.auth_mode !== 'disabled';
    if (config.auth_mode === 'disabled') {
      await guarded(enter);
      return;
    }
    if (!config.supabase_url || !config.supabase_anon_key) {
      fatal('Sign-in is not configured on this deployment (SUPABASE_URL and SUPABASE_ANON_KEY).');
      return;
    }
    showSignIn('');
  }

  function wire() {
    $('signin-form').addEventListener('submit', submitSignIn);
    $('sign-out').addEventListener('click', signOut);
    $('noaccess-sign-out').addEventListener('click', signOut);
    $('fatal-retry').addEventListener('click', boot);
    for (const button of document.querySelectorAll('dialog [data-close]')) {
      button.addEventListener('click', () => button.closest('dialog').close());
    }
    wireLogs();
    $('edit-folder').addEventListener('click', () => openEdit('backup_folder_path'));
    $('edit-email').addEventListener('click', () => openEdit('backup_notification_email'));
    $('edit-form').addEventListener('submit', (e) => {
      e.preventDefault();
      guarded(saveEdit);
    });
    $('edit-value').addEventListener('input', () => setEditError(''));
    $('run-backup').addEventListener('click', () => openDialog($('confirm-dialog'), $('confirm-cancel')));
    $('confirm-run').addEventListener('click', () => {
      $('confirm-dialog').close();
      guarded(runBackup);
    });
  }

  // ---- page modules ----------------------------------------------------------------------------
  // Files loaded before this one (restore.js) push a setup function onto window.dbConsoleModules.
  // Each gets these helpers, never the session itself, and may return {row(item, tr)} to add to
  // each row of the logs table.
  const modules = (window.dbConsoleModules || []).map((setupModule) => setupModule(Object.freeze({
    el, apiJson, guarded, toast, openDialog, formatDate, messageOf, reloadLogs: () => guarded(loadLogs),
  })) || {});

  wire();
  boot();
})();
