"use strict";
// A job's page: its log, followed while the attempt runs. The browser reads
// the API's log stream itself (GET /api/v1/jobs/REF/logs?follow=true, with
// its login), so each line shows as soon as the server reads it.
(function () {
  const log = document.getElementById('log');
  if (!log) {
    // A queued job's page: once the job has started, load the page again
    // for its log.
    document.body.addEventListener('htmx:afterSwap', () => {
      if (document.querySelector('#job-state[data-started]')) location.reload();
    });
    return;
  }
  const status = document.getElementById('log-status');
  const follow = document.getElementById('follow');
  const decoder = new TextDecoder();
  function keepInView() {
    if (follow.checked) log.scrollTop = log.scrollHeight;
  }
  async function read() {
    status.textContent = 'Following the log…';
    let r;
    try {
      r = await fetch(log.dataset.src, {credentials: 'same-origin'});
    } catch (e) {
      status.textContent = 'The pool cannot be reached: reload the page to read the log again.';
      return;
    }
    if (!r.ok) {
      let msg = 'The pool answered ' + r.status + '.';
      try { const b = await r.json(); if (b.error) msg = b.error.message; } catch (e) { /* not JSON */ }
      status.textContent = msg;
      return;
    }
    const reader = r.body.getReader();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      log.append(decoder.decode(value, {stream: true}));
      log.dataset.updated = String(Date.now());
      keepInView();
    }
    log.append(decoder.decode());
    status.textContent = log.textContent === '' ? 'The attempt wrote nothing.' : 'The attempt has ended: this is its whole log.';
    log.dataset.done = 'true';
  }
  follow.addEventListener('change', keepInView);
  read();
})();
