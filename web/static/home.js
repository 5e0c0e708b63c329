"use strict";
// The home page: the state of the user's Jupyter server, kept up to date,
// and its Start and Stop buttons, which call the API without leaving the
// page (the forms post to the dashboard where this script does not run).
const xsrf = document.querySelector('meta[name=xsrf]').content;
const $ = (id) => document.getElementById(id);
let began = 0;
function show(nb) {
  $('state').textContent = nb.state;
  $('where').textContent = nb.node_name ? 'on node ' + nb.node_name + ' of pool ' + nb.pool : '';
  const running = nb.state === 'starting' || nb.state === 'ready';
  $('start').disabled = running;
  $('stop').disabled = !running;
  $('open').hidden = nb.state !== 'ready';
  $('open').href = nb.url;
  $('progress').textContent = nb.state === 'starting' ? 'Starting, ' + Math.round((Date.now() - began) / 1000) + ' s' : '';
  $('message').hidden = !nb.message;
  $('message').textContent = nb.message || '';
  $('idle').textContent = '';
  if (nb.state === 'ready' && nb.stops_at && nb.idle_since) {
    const left = new Date(nb.stops_at) - Date.now(), period = new Date(nb.stops_at) - new Date(nb.idle_since);
    if (left < Math.min(10 * 60 * 1000, period / 4)) {
      $('idle').textContent = 'Unused since ' + new Date(nb.idle_since).toLocaleTimeString() +
        ': it will be stopped in ' + Math.max(0, Math.round(left / 1000)) + ' s unless a kernel runs or you use it.';
    }
  }
}
function problem(e) {
  $('message').hidden = false;
  $('message').textContent = e.message;
}
async function api(method, body) {
  const r = await fetch('/api/v1/notebook', {method, headers: {'X-XSRF-Token': xsrf, 'Content-Type': 'application/json'},
    credentials: 'same-origin', body: body ? JSON.stringify(body) : undefined});
  let answer;
  try { answer = await r.json(); } catch (e) { answer = {}; }
  if (!r.ok) throw new Error(answer.error ? answer.error.message : 'The pool answered ' + r.status + ': reload the page and try again.');
  return answer;
}
let timer = 0;
async function poll() {
  clearTimeout(timer);
  try {
    const nb = await api('GET');
    show(nb);
    timer = setTimeout(poll, nb.state === 'starting' ? 500 : 5000);
  } catch (e) {
    problem(e);
    timer = setTimeout(poll, 5000); // the pool may be restarting: try again
  }
}
$('start-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  began = Date.now();
  let pool = $('pool') ? $('pool').value : '', profile = '';
  const size = $('profile') ? $('profile').value : '';
  if (size) { [pool, profile] = size.split('+'); } // a profile names its pool
  try { show(await api('POST', {pool, profile})); poll(); } catch (e) { problem(e); }
});
$('stop-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try { show(await api('DELETE')); } catch (e) { problem(e); }
});
began = Date.now();
poll();
