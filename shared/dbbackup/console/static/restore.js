/* Restore and "Verify now" for the backup console (docs/console.md).
 *
 * A page module: loaded before console.js, it hands console.js a setup function, which gets the
 * page's helpers (the API with the session's token, toasts, dialogs) and never sees the session
 * itself. Targets are the operator's RESTORE_TARGETS, chosen by name: no URL is typed here, and
 * the restore only starts once the target's name is typed again.
 */
(() => {
  'use strict';

  const POLL_MS = 1500;
  const VERIFY_TEXT = { passed: 'Verified', failed: 'Verify failed', skipped: 'Not verified' };

  function setup(h) {
    const { el } = h;
    let targets = null; // GET api/restore-targets, read when the dialog first opens
    let current = null; // the backup row being restored
    let restoring = false;

    // ---- the dialog, built once -------------------------------------------------------------

    const title = el('h2', { id: 'restore-title', text: 'Restore backup' });
    const close = el('button', { type: 'button', className: 'close', 'aria-label': 'Close', text: '×' });
    const what = el('p', { id: 'restore-what' });
    const unavailable = el('p', { className: 'error', id: 'restore-unavailable', role: 'alert', hidden: true });
    const select = el('select', { id: 'restore-target', name: 'target' });
    const note = el('p', { className: 'hint', id: 'restore-note' });
    const danger = el('p', { className: 'error', id: 'restore-danger', hidden: true });
    const confirm = el('input', {
      id: 'restore-confirm', name: 'confirm', type: 'text', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': 'restore-note restore-danger',
    });
    const confirmLabel = el('label', { for: 'restore-confirm', id: 'restore-confirm-label', text: 'Type the target\'s name to confirm' });
    const progress = el('progress', { id: 'restore-progress', max: '1', hidden: true });
    const state = el('p', { id: 'restore-state', role: 'status', 'aria-live': 'polite' });
    const failure = el('p', { className: 'error', id: 'restore-error', role: 'alert', hidden: true });
    const cancel = el('button', { type: 'button', text: 'Cancel' });
    const submit = el('button', { type: 'submit', className: 'primary', id: 'restore-submit', text: 'Restore', disabled: true });
    const fields = el('div', { id: 'restore-fields' },
      el('div', { className: 'field' }, el('label', { for: 'restore-target', text: 'Restore into' }), select),
      note, danger,
      el('div', { className: 'field' }, confirmLabel, confirm));
    const form = el('form', { id: 'restore-form', novalidate: true },
      el('div', { className: 'dialog-head' }, title, close),
      what, unavailable, fields, progress, state, failure,
      el('div', { className: 'buttons' }, cancel, submit));
    const dialog = el('dialog', { id: 'restore-dialog', 'aria-labelledby': 'restore-title' }, form);
    // In the page only while open: its labels never answer a search for another field's label.
    dialog.addEventListener('close', () => dialog.remove());
    close.addEventListener('click', () => dialog.close());
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('cancel', (e) => { if (restoring) e.preventDefault(); }); // Escape waits for the answer

    function chosen() {
      return (targets && targets.targets || []).find((t) => t.name === select.value) || null;
    }

    function describe() {
      const t = chosen();
      danger.hidden = true;
      if (!t) return;
      if (t.replace) note.textContent = `Everything in ${t.name} is deleted first, in the same transaction as the restore.`;
      else note.textContent = `${t.name} must be empty: the restore refuses a database that holds tables.`;
      if (t.is_source) {
        danger.textContent = `${t.name} is the backed-up database itself: restoring overwrites the live data.`;
        danger.hidden = false;
      } else if (t.reachable === false) {
        danger.textContent = `${t.name} cannot be reached right now.`;
        danger.hidden = false;
      }
      confirmLabel.textContent = `Type ${t.name} to confirm`;
      submit.disabled = restoring || confirm.value !== t.name;
    }

    select.addEventListener('change', () => { confirm.value = ''; failure.hidden = true; describe(); });
    confirm.addEventListener('input', describe);

    function show(problem) {
      unavailable.textContent = problem || '';
      unavailable.hidden = !problem;
      fields.hidden = Boolean(problem);
      submit.hidden = Boolean(problem);
    }

    async function openRestore(row) {
      current = row;
      const res = await h.apiJson('api/restore-targets');
      if (!res.ok) {
        h.toast('error', `Could not read the restore targets: ${h.messageOf(res.body, res.status)}`);
        return;
      }
      targets = res.body;
      title.textContent = `Restore ${row.file_name}`;
      what.textContent = `Backup of ${h.formatDate(row.started_at)} (${row.file_size_human || 'size unknown'}).`;
      failure.hidden = true;
      state.textContent = '';
      progress.hidden = true;
      confirm.value = '';
      select.replaceChildren(...targets.targets.map((t) => el('option', {
        value: t.name, text: t.name + (t.replace ? ' (replaces its contents)' : '') + (t.is_source ? ' — the backed-up database' : ''),
      })));
      if (row.encrypted && !targets.can_decrypt) show(`Restore is unavailable for this backup: ${targets.decrypt_problem}`);
      else if (!targets.targets.length) show('Restore is unavailable: no restore targets are configured (RESTORE_TARGETS).');
      else show('');
      describe();
      document.body.append(dialog);
      h.openDialog(dialog, fields.hidden ? cancel : select);
    }

    function showProgress(item) {
      const p = item && item.progress;
      if (!p || !p.bytes_read) return;
      progress.hidden = false;
      if (p.total_bytes) {
        progress.max = p.total_bytes;
        progress.value = Math.min(p.bytes_read, p.total_bytes);
        state.textContent = `Restoring… ${Math.round((100 * progress.value) / p.total_bytes)} % read`;
      } else {
        progress.removeAttribute('value');
      }
    }

    async function poll(target) {
      // The restore runs inside the POST; its row tells how far it got meanwhile.
      while (restoring) {
        await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
        if (!restoring) return;
        const res = await h.apiJson('api/restores');
        if (!res.ok) continue;
        const item = (res.body.items || []).find((r) => r.status === 'in_progress' && r.target === target && r.backup_id === current.id);
        showProgress(item);
      }
    }

    async function runRestore() {
      const t = chosen();
      if (!t || confirm.value !== t.name || restoring) return;
      restoring = true;
      submit.disabled = true;
      cancel.disabled = true;
      close.disabled = true;
      failure.hidden = true;
      progress.hidden = false;
      progress.removeAttribute('value');
      state.textContent = `Restoring ${current.file_name} into ${t.name}…`;
      const watching = poll(t.name).catch(() => {});
      try {
        const res = await h.apiJson(`api/backups/${encodeURIComponent(current.id)}/restore`, {
          method: 'POST', json: { target: t.name, confirm: confirm.value },
        });
        const b = res.body || {};
        if (res.ok && b.status === 'success') {
          progress.max = 1;
          progress.value = 1;
          const text = `Restored ${current.file_name} into ${t.name}: ${b.tables} tables, ${Number(b.rows).toLocaleString()} rows in ${Number(b.seconds).toFixed(1)} s.`;
          state.textContent = text;
          h.toast('success', text);
        } else {
          progress.hidden = true;
          state.textContent = '';
          const reason = b.reason || h.messageOf(b, res.status);
          const wait = res.status === 429 ? res.response.headers.get('Retry-After') : null;
          failure.textContent = `Restore failed: ${reason}${wait ? ` Try again in ${wait} s.` : ''}`;
          failure.hidden = false;
          h.toast('error', `Restore into ${t.name} failed: ${reason}`);
        }
      } finally {
        restoring = false;
        cancel.disabled = false;
        close.disabled = false;
        describe();
        await watching;
      }
    }

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      h.guarded(runRestore);
    });

    // ---- verify now ---------------------------------------------------------------------------

    async function verifyNow(row, button) {
      const label = button.firstChild; // the visible text; the hidden file name stays
      button.disabled = true;
      label.textContent = 'Verifying…';
      h.toast('info', `Verifying ${row.file_name}: restoring it into a scratch database…`);
      try {
        const res = await h.apiJson(`api/backups/${encodeURIComponent(row.id)}/verify`, { method: 'POST', json: {} });
        const b = res.body || {};
        if (!res.ok) {
          h.toast('error', `Could not verify ${row.file_name}: ${h.messageOf(b, res.status)}`);
        } else if (b.verify_status === 'passed') {
          h.toast('success', `Verify passed: ${row.file_name} restored with the recorded rows (${Object.keys(b.tables || {}).length} tables).`);
        } else {
          h.toast(b.verify_status === 'failed' ? 'error' : 'info', `Verify ${b.verify_status}: ${b.detail}`);
        }
      } finally {
        button.disabled = false;
        label.textContent = 'Verify now';
      }
      await h.reloadLogs();
    }

    // ---- each row of the logs table -----------------------------------------------------------

    function row(item, tr) {
      const cell = tr.querySelector('td.state');
      if (!cell) return;
      if (item.verify_status) {
        cell.append(el('span', {
          className: `badge verify ${item.verify_status}`,
          text: VERIFY_TEXT[item.verify_status] || item.verify_status,
          title: `Restore drill ${item.verify_status} ${h.formatDate(item.verified_at)}`,
        }));
      }
      if (item.status !== 'success' || item.deleted) return;
      // The file name completes each button's accessible name from hidden text, not aria-label:
      // a label search for the date filter's "To" would otherwise also find every "Restore".
      const named = (text) => [text, el('span', { className: 'visually-hidden', text: ` ${item.file_name}` })];
      const verify = el('button', { type: 'button', className: 'link verify-now' }, ...named('Verify now'));
      verify.addEventListener('click', () => h.guarded(() => verifyNow(item, verify)));
      const restore = el('button', { type: 'button', className: 'link restore' }, ...named('Restore…'));
      restore.addEventListener('click', () => h.guarded(() => openRestore(item)));
      cell.append(el('span', { className: 'row-actions' }, verify, restore));
    }

    return { row };
  }

  (window.dbConsoleModules = window.dbConsoleModules || []).push(setup);
})();
