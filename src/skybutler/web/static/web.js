// The web view's small helpers, plain JavaScript without a build step.
// "Copy" buttons: <button data-copy="ID"> copies the text of the element with that id.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) { return; }
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) { return; }
  var text = source.textContent;
  var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    var area = document.createElement("textarea");
    area.value = text; document.body.appendChild(area); area.select();
    document.execCommand("copy"); document.body.removeChild(area); done();
  }
});
// Insert a clicked dimension or dataset-type name into the where-clause box.
document.addEventListener("click", function (event) {
  var chip = event.target.closest("button[data-insert]");
  if (!chip) { return; }
  var box = document.getElementById("where");
  if (!box) { return; }
  var word = chip.getAttribute("data-insert");
  var start = box.selectionStart || box.value.length;
  box.value = box.value.slice(0, start) + word + box.value.slice(box.selectionEnd || start);
  box.focus();
  box.selectionStart = box.selectionEnd = start + word.length;
});
