function sortTable(th) {
  var table = th.closest('table'), body = table.tBodies[0];
  var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
  var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[idx].dataset.v, y = b.cells[idx].dataset.v;
    var nx = parseFloat(x), ny = parseFloat(y);
    if (!isNaN(nx) || !isNaN(ny)) {
      if (isNaN(nx)) return 1; if (isNaN(ny)) return -1;
      return asc ? nx - ny : ny - nx;
    }
    return asc ? String(x).localeCompare(y) : String(y).localeCompare(x);
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
document.querySelectorAll('th').forEach(function (th) {
  th.addEventListener('click', function () { sortTable(th); });
});
