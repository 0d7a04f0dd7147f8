/* The schedule and retention settings: when the backup and the cleanup run (their Cloud
 * Scheduler jobs) and how long backups are kept. GET/PUT api/config/schedule; the server checks
 * every value and names the field it refuses, which is shown beside that field.
 * console.js hands over its API helpers in the 'dbbackup:open' event.
 */
(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);
  // Form field id -> the API's field name (a 400 answer's ``field``).
  const FIELDS = {
    's-backup-cron': 'backup.cron',
    's-backup-zone': 'backup.time_zone',
    's-cleanup-cron': 'cleanup.cron',
    's-cleanup-zone': 'cleanup.time_zone',
    's-retention-days': 'retention.retention_days',
    's-keep-weekly': 'retention.keep_weekly',
    's-keep-monthly': 'retention.keep_monthly',
  };
  let tools = null;
  let shown = null; // the settings as last read, to send only what changed

  function value(id) {
    return $(id).value.trim();
  }

  function setError(id, text) {
    const input = $(id);
    const error = $(`${id}-error`);
    error.hidden = !text;
    error.textContent = text || '';
    if (text) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  function clearErrors() {
    for (const id of Object.keys(FIELDS)) setError(id, '');
    $('schedule-error').hidden = true;
  }

  function fill(body) {
    shown = body;
    $('s-backup-cron').value = body.backup.cron;
    $('s-backup-zone').value = body.backup.time_zone;
    $('s-cleanup-cron').value = body.cleanup.cron;
    $('s-cleanup-zone').value = body.cleanup.time_zone;
    $('s-retention-days').value = String(body.retention.retention_days);
    $('s-keep-weekly').value = String(body.retention.keep_weekly);
    $('s-keep-monthly').value = String(body.retention.keep_monthly);
    const next = (job) => (body[job].next_run ? `next run ${tools.formatDate(body[job].next_run)}` : 'no next run');
    $('s-backup-next').textContent = next('backup');
    $('s-cleanup-next').textContent = next('cleanup');
    const state = $('schedule-state');
    state.textContent = body.applied
      ? 'Applied to the Cloud Scheduler jobs.'
      : `Not applied to a scheduler: ${body.detail || 'stored only'}`;
    state.className = body.applied ? 'good' : 'warn';
  }

  async function load() {
    const res = await tools.apiJson('api/config/schedule');
    if (!res.ok) {
      $('schedule-state').textContent = `The schedule could not be loaded: ${tools.messageOf(res.body, res.status)}`;
      return;
    }
    fill(res.body);
  }

  /** Only the parts that changed; a quick shape check first (the server has the last word). */
  function changes() {
    const body = {};
    for (const job of ['backup', 'cleanup']) {
      const part = {};
      const cron = value(`s-${job}-cron`).replace(/\s+/g, ' ');
      const zone = value(`s-${job}-zone`);
      if (cron !== shown[job].cron) part.cron = cron;
      if (zone !== shown[job].time_zone) part.time_zone = zone;
      if (part.cron !== undefined && cron.split(' ').length !== 5) {
        setError(`s-${job}-cron`, 'Five fields: minute hour day-of-month month day-of-week, e.g. 0 1 * * *.');
        return null;
      }
      if (Object.keys(part).length) body[job] = part;
    }
    const retention = {};
    for (const [id, name] of [['s-retention-days', 'retention_days'], ['s-keep-weekly', 'keep_weekly'], ['s-keep-monthly', 'keep_monthly']]) {
      const text = value(id);
      if (!/^\d+$/.test(text)) {
        setError(id, 'A whole number.');
        return null;
      }
      if (Number(text) !== shown.retention[name]) retention[name] = Number(text);
    }
    if (Object.keys(retention).length) body.retention = retention;
    return body;
  }

  async function save(event) {
    event.preventDefault();
    clearErrors();
    const body = changes();
    if (body === null) return;
    if (!Object.keys(body).length) {
      tools.toast('info', 'Nothing changed.');
      return;
    }
    const button = $('schedule-save');
    button.disabled = true;
    try {
      const res = await tools.apiJson('api/config/schedule', { method: 'PUT', json: body });
      if (res.status === 400 && res.body.field) {
        const id = Object.keys(FIELDS).find((key) => FIELDS[key] === res.body.field);
        if (id) {
          setError(id, tools.messageOf(res.body, 400));
          $(id).focus();
          return;
        }
      }
      if (!res.ok) {
        const error = $('schedule-error');
        error.textContent = tools.messageOf(res.body, res.status);
        error.hidden = false;
        return;
      }
      fill(res.body);
      tools.toast('success', res.body.applied
        ? 'Schedule saved and applied to Cloud Scheduler.'
        : 'Schedule saved (stored only: no Cloud Scheduler is configured).');
      document.dispatchEvent(new CustomEvent('dbbackup:changed'));
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener('dbbackup:open', (event) => {
    const first = tools === null;
    tools = event.detail;
    if (first) {
      $('schedule-form').addEventListener('submit', (e) => tools.guarded(() => save(e)));
      for (const id of Object.keys(FIELDS)) $(id).addEventListener('input', () => setError(id, ''));
    }
    tools.guarded(load);
  });
})();
