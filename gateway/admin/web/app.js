// ringgate dashboard: the little JavaScript it has. Pages marked data-live reload every 3 s while
// "live" is on, so retries and the breaker can be watched; confirmations guard destructive forms.
(function () {
  var live = document.querySelector("[data-live]");
  if (live) {
    var box = document.getElementById("live");
    var on = localStorage.getItem("ringgate-live") !== "off";
    if (box) {
      box.checked = on;
      box.addEventListener("change", function () { localStorage.setItem("ringgate-live", box.checked ? "on" : "off"); });
    }
    setInterval(function () {
      var typing = document.activeElement && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName);
      if ((!box || box.checked) && !typing) location.reload();
    }, 3000);
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!confirm(f.getAttribute("data-confirm"))) e.preventDefault(); });
  });
})();
