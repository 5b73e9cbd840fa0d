// The provenance graph page: open with the dataset itself in view (the graph may be wider and
// taller than the window).  Plain JavaScript, no build step; the page works without it.
document.addEventListener("DOMContentLoaded", function () {
  var focus = document.querySelector("svg.provenance .focus rect");
  var box = document.querySelector(".graph-scroll");
  if (!focus || !box) { return; }
  var x = parseFloat(focus.getAttribute("x")), y = parseFloat(focus.getAttribute("y"));
  box.scrollLeft = Math.max(0, x - box.clientWidth / 2 + 100);
  box.scrollTop = Math.max(0, y - box.clientHeight / 2 + 20);
});
