"use strict";
// The usage page's charts, drawn with uPlot from the figures the page
// carries (data-chart: {"series": names, "data": [days, values...]}).
(function () {
  const colours = ['#1f6feb', '#bf3989', '#1a7f37', '#9a6700', '#8250df', '#cf222e'];
  function draw(el, bars) {
    const spec = JSON.parse(el.dataset.chart);
    const width = () => Math.max(280, el.clientWidth);
    // Bars side by side for one or two series; more would overlap: lines.
    bars = bars && spec.series.length <= 2;
    const series = [{label: 'Day', value: (u, v) => v == null ? '' : new Date(v * 1000).toISOString().slice(0, 10)}];
    spec.series.forEach((name, i) => series.push({
      label: name, stroke: colours[i % colours.length], fill: bars ? colours[i % colours.length] + '55' : undefined, width: 2,
      points: {show: true},
      paths: bars && uPlot.paths.bars ? uPlot.paths.bars({size: [0.3, 60], align: i === 0 ? -1 : 1}) : undefined,
      value: (u, v) => v == null ? '' : v.toFixed(2) + ' h',
    }));
    const plot = new uPlot({width: width(), height: 260, series, axes: [{}, {label: 'hours'}], scales: {x: {time: true}}}, spec.data, el);
    el.dataset.drawn = 'true';
    window.addEventListener('resize', () => plot.setSize({width: width(), height: 260}));
  }
  document.querySelectorAll('.chart').forEach((el) => draw(el, true));
})();
