/* ringgate tracker: <script async src="https://calls.example.com/t.js?w=WORKSPACE_ID"></script>
 * Reports the visit, shows this visitor's tracking number in place of the campaign's numbers
 * (text and tel: links, also content added later), puts the attribution into every form as hidden
 * inputs, and keeps the number held with heartbeats while the page is visible.
 * With data-consent="wait" on the script tag it reads, stores and sends nothing until the page
 * calls ringgate.consent() (from its consent banner, on every page once the visitor agreed). */
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || !window.fetch || !window.URLSearchParams) return;
  var src = new URL(me.src), w = src.searchParams.get("w");
  if (!w) return;
  var api = src.origin + "/v1/sessions?w=" + encodeURIComponent(w);
  var KEY = "ringgate:" + w, VISIT = 30 * 60 * 1000, BEAT = 60 * 1000;
  var URL_FIELDS = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
    "gclid", "gbraid", "wbraid", "fbclid", "msclkid", "ttclid", "li_fat_id"];
  var FORM_FIELDS = URL_FIELDS.concat(["ga_client_id", "ga_session_id", "referrer_url", "landing_page_url"]);

  function load() {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return {}; }
  }
  function save(s) {
    try { localStorage.setItem(KEY, JSON.stringify(s)); } catch (e) {}
  }
  function cookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name.replace(/[.$?*|{}()[\]\\/+^]/g, "\\$&") + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }
  // _ga = GA1.1.<client id: two numbers>; _ga_<container> = GS1.1.<session id>.… or GS2.1.s<session id>$…
  function gaClientId() {
    var p = cookie("_ga").split(".");
    return p.length >= 4 ? p[p.length - 2] + "." + p[p.length - 1] : "";
  }
  function gaSessionId() {
    var all = document.cookie.split("; ");
    for (var i = 0; i < all.length; i++) {
      var kv = all[i].split("=");
      if (kv[0].indexOf("_ga_") !== 0) continue;
      var v = decodeURIComponent(kv.slice(1).join("=")), m = v.match(/^GS\d\.\d\.s?(\d+)/);
      if (m) return m[1];
    }
    return "";
  }

  var begun = false;
  function begin() { if (!begun) { begun = true; run(); } }
  window.ringgate = window.ringgate || {};
  window.ringgate.consent = begin;
  if (me.getAttribute("data-consent") !== "wait") begin();

  function run() {
    var state = load(), now = Date.now(), q = new URLSearchParams(location.search);
    var fresh = {}, any = false;
    URL_FIELDS.forEach(function (f) { var v = q.get(f); if (v) { fresh[f] = v; any = true; } });
    // A new visit starts after 30 minutes away, or when the URL carries new attribution.
    if (!state.attr || now - (state.seen || 0) > VISIT || (any && !state.attr.landing_page_url)) {
      state = { sid: state.sid, attr: fresh };
      state.attr.referrer_url = document.referrer || "";
      state.attr.landing_page_url = location.href;
    } else if (any) {
      // first touch wins within a visit: only fill what is missing
      for (var k in fresh) if (!state.attr[k]) state.attr[k] = fresh[k];
    }
    var ga = gaClientId(), gs = gaSessionId();
    if (ga && !state.attr.ga_client_id) state.attr.ga_client_id = ga;
    if (gs && !state.attr.ga_session_id) state.attr.ga_session_id = gs;
    state.seen = now;
    save(state);

    function attribution() {
      var a = {};
      for (var k in state.attr) if (state.attr[k]) a[k] = String(state.attr[k]).slice(0, 2048);
      return a;
    }

    // --- number swapping -------------------------------------------------------------------
    var swaps = []; // {re, digits}
    // Country calling codes are prefix-free: 1 and 7 have one digit, these two, the rest three.
    var CC2 = " 20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98 ";
    function ccLen(d) { return /^[17]/.test(d) ? 1 : CC2.indexOf(" " + d.slice(0, 2) + " ") >= 0 ? 2 : 3; }
    // national is the number without its country code: what a page writes after a trunk 0 or
    // the +CC, and what a swap replaces (the prefix the page wrote stays).
    function national(e164) { var d = e164.replace(/\D/g, ""); return d.slice(ccLen(d)); }
    function patternFor(e164) {
      var all = e164.replace(/\D/g, ""), cc = all.slice(0, ccLen(all)), d = all.slice(cc.length);
      if (cc === "1" && d.length === 10)
        return new RegExp("(?:\\+?1[\\s.\\-]?)?\\(?" + d.slice(0, 3) + "\\)?[\\s.\\-]?" + d.slice(3, 6) + "[\\s.\\-]?" + d.slice(6), "g");
      // elsewhere: +CC, 00CC (either with an optional "(0)") or a trunk 0, then the national
      // number's digits with spaces, dots, dashes, slashes or parentheses between them
      var sep = "[\\s.\\-/()]{0,2}";
      return new RegExp("(?:(?:\\+|\\b00)" + cc + sep + "(?:\\(0\\)" + sep + ")?|(?:\\(|\\b)0" + sep + "|\\b)" +
        d.split("").join(sep) + "(?!\\d)", "g");
    }
    // Keep the page's format: replace the digits of the match one by one, leaving the rest.
    function reformat(match, e164) {
      var nd = national(e164), out = "", digits = match.replace(/\D/g, ""), skip = digits.length - nd.length, i = 0;
      for (var j = 0; j < match.length; j++) {
        var c = match.charAt(j);
        if (c >= "0" && c <= "9") {
          out += i < skip ? c : nd.charAt(i - skip);
          i++;
        } else out += c;
      }
      return out;
    }
    function swapText(node, number) {
      var text = node.nodeValue, changed = text;
      swaps.forEach(function (s) {
        changed = changed.replace(s.re, function (m) { return reformat(m, number); });
      });
      if (changed !== text) node.nodeValue = changed;
    }
    function swapTree(root, number) {
      if (!number || !swaps.length || !root) return;
      if (root.nodeType === 3) { swapText(root, number); return; }
      if (root.nodeType !== 1 || /^(SCRIPT|STYLE|TEXTAREA|INPUT)$/.test(root.nodeName)) return;
      var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, null), n;
      var nodes = [];
      while ((n = walker.nextNode())) nodes.push(n);
      nodes.forEach(function (t) { if (t.parentNode && !/^(SCRIPT|STYLE|TEXTAREA)$/.test(t.parentNode.nodeName)) swapText(t, number); });
      var links = root.querySelectorAll ? root.querySelectorAll("a[href^='tel:']") : [];
      if (root.nodeName === "A") links = [root].concat([].slice.call(links));
      [].forEach.call(links, function (a) {
        var href = a.getAttribute("href") || "";
        if (href.indexOf("tel:") !== 0) return;
        var d = href.slice(4).replace(/\D/g, "");
        swaps.forEach(function (s) {
          if (d.length >= s.digits.length && d.slice(-s.digits.length) === s.digits) a.setAttribute("href", "tel:" + number);
        });
      });
    }

    // --- forms -------------------------------------------------------------------------------
    function fillForm(form) {
      var a = attribution();
      FORM_FIELDS.forEach(function (f) {
        if (!a[f]) return;
        var input = form.querySelector("input[name='" + f + "']");
        if (!input) {
          input = document.createElement("input");
          input.type = "hidden";
          input.name = f;
          form.appendChild(input);
        }
        input.value = a[f];
      });
    }
    function fillForms(root) {
      if (!root || root.nodeType !== 1) return;
      if (root.nodeName === "FORM") fillForm(root);
      [].forEach.call(root.querySelectorAll ? root.querySelectorAll("form") : [], fillForm);
    }

    // --- the session -------------------------------------------------------------------------
    var current = state.number || "";
    function apply(root) { fillForms(root); swapTree(root, current); }
    function post() {
      var body = JSON.stringify({ session_id: state.sid || undefined, attribution: attribution() });
      return fetch(api, { method: "POST", mode: "cors", credentials: "omit", keepalive: true,
        headers: { "Content-Type": "application/json" }, body: body })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (!s || !s.session_id) return;
          state.sid = s.session_id;
          state.number = s.number || "";
          save(state);
          swaps = (s.swap_numbers || []).map(function (n) { return { re: patternFor(n), digits: national(n) }; });
          if (s.number && s.number !== current) {
            var previous = current;
            current = s.number;
            if (previous) swaps.push({ re: patternFor(previous), digits: national(previous) });
            swapTree(document.body, current);
          }
        })
        .catch(function () {});
    }
    function start() {
      apply(document.body);
      new MutationObserver(function (ms) {
        ms.forEach(function (m) {
          [].forEach.call(m.addedNodes, apply);
          if (m.type === "characterData") swapTree(m.target, current);
        });
      }).observe(document.body, { childList: true, subtree: true, characterData: true });
      post();
      setInterval(function () { if (document.visibilityState === "visible") post(); }, BEAT);
      document.addEventListener("visibilitychange", function () { if (document.visibilityState === "visible") post(); });
    }
    if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
  }
})();
