var DATA = JSON.parse(document.getElementById('curves').textContent);
var palette = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2',
               '#7f7f7f','#bcbd22','#17becf'];
var dashes = ['solid','dash','dashdot','dot','longdash','longdashdot'];
function famColor(fam, k, n) {
  var i = DATA.families.indexOf(fam) % palette.length;
  return palette[i];
}
function draw() {
  var metric = document.getElementById('metric').value;
  var x = document.getElementById('xaxis').value;
  var logy = document.getElementById('logy').checked;
  var bands = document.getElementById('bands').checked;
  var fams = Array.prototype.slice.call(document.querySelectorAll('.fam:checked'))
    .map(function (c) { return c.value; });
  var traces = [];
  var members = {};
  DATA.order.forEach(function (label, r) {
    var fam = DATA.family[label];
    members[fam] = (members[fam] || 0) + 1;
    if (fams.indexOf(fam) < 0) return;
    var c = (DATA.curves[metric] || {})[x]; if (!c || !c[label]) return;
    var d = c[label], color = famColor(fam), dash = dashes[(members[fam] - 1) % dashes.length];
    var name = (r + 1) + '. ' + label + ' [' + fam + ']';
    if (bands) {
      traces.push({x: d.x, y: d.high, mode: 'lines', line: {width: 0, color: color},
                   legendgroup: label, showlegend: false, hoverinfo: 'skip'});
      traces.push({x: d.x, y: d.low, mode: 'lines', line: {width: 0, color: color},
                   fill: 'tonexty', opacity: 0.2, legendgroup: label, showlegend: false,
                   hoverinfo: 'skip', fillcolor: color + '33'});
    }
    traces.push({x: d.x, y: d.median, mode: 'lines', name: name, legendgroup: label,
                 line: {color: color, dash: dash, width: 2},
                 hovertemplate: label + '<br>%{x:.4g}, %{y:.4g}<extra></extra>'});
  });
  var layout = {title: {text: DATA.title + ': ' + DATA.metrics[metric] +
                        ' — median over seeds' + (bands ? ', 20–80 % band' : '')},
                xaxis: {title: {text: DATA.xtitles[x]}},
                yaxis: {title: {text: DATA.metrics[metric]}, type: logy ? 'log' : 'linear'},
                legend: {font: {size: 11}}, margin: {t: 50}};
  Plotly.react('plot', traces, layout, {responsive: true, displaylogo: false})
    .then(function () { document.body.dataset.rendered = '1'; });
}
['metric','xaxis','logy','bands'].forEach(function (id) {
  document.getElementById(id).addEventListener('change', draw);
});
document.querySelectorAll('.fam').forEach(function (c) { c.addEventListener('change', draw); });
draw();
