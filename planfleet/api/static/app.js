// planfleet UI: keeps the page live (fetches its main part again every 2 s) and sends the
// buttons, toggles and settings form to the REST API. The browser signs in with a session
// cookie that no script can read (HttpOnly): `planfleet up` prints a link that carries the
// token after '#token='; this script trades it at /login for the cookie and forgets it.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  var toast = document.getElementById("toast");
  var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    var token = decodeURIComponent(m[1]);
    history.replaceState(null, "", location.pathname + location.search);
    var next = location.pathname === "/login"
      ? (new URLSearchParams(location.search).get("next") || "/")
      : location.pathname + location.search;
    fetch("/login", {method: "POST", redirect: "manual",
                     headers: {"Content-Type": "application/x-www-form-urlencoded"},
                     body: new URLSearchParams({token: token, next: next}).toString()})
      .then(function (r) {
        if (r.status === 403) throw new Error("the link's token is not this fleet's");
        location.replace(next);
      })
      .catch(function (e) { if (toast) { toast.textContent = e.message; toast.className = "bad shown"; } });
    return;
  }
  if (!main || !live) return; // the sign-in page: a plain form

  function say(text, bad) {
    toast.textContent = text;
    toast.className = bad ? "bad shown" : "shown";
    clearTimeout(say.t);
    say.t = setTimeout(function () { toast.className = ""; }, 5000);
  }

  function call(method, url, body) {
    var headers = {"Accept": "application/json"};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, {method: method, headers: headers,
                       body: body === undefined ? undefined : JSON.stringify(body)})
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) {
            var detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
            throw new Error(r.status + ": " + (detail || r.statusText));
          }
          return data;
        });
      });
  }

  var busy = false;
  function refresh() {
    if (busy || document.hidden) return;
    var active = document.activeElement;
    if (active && active.tagName === "INPUT" && main.contains(active) && active.type !== "checkbox") {
      return; // someone is typing: do not replace the form under them
    }
    if (dialog && dialog.open) return; // a question is open: keep the page as it is
    busy = true;
    fetch(location.pathname + location.search, {headers: {"X-Partial": "1"}})
      .then(function (r) {
        if (r.status === 401) { location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search)); }
        if (!r.ok) throw new Error(r.status);
        return r.text();
      })
      .then(function (html) {
        var focusId = active && active.id;
        main.innerHTML = html;
        if (focusId && main.contains(document.getElementById(focusId) || main)) {
          var again = document.getElementById(focusId);
          if (again) again.focus();
        }
        live.textContent = "live " + new Date().toLocaleTimeString();
        live.className = "live";
      })
      .catch(function (e) { live.textContent = "offline (" + e.message + ")"; live.className = "live bad"; })
      .finally(function () { busy = false; });
  }

  // A button with data-confirm asks its question first, in the page's dialog (outside the
  // part that the refresh replaces); resolves whether the person said yes.
  var dialog = document.getElementById("confirm");
  function confirmed(b) {
    var question = b.dataset.confirm;
    if (!question) return Promise.resolve(true);
    if (!dialog || typeof dialog.showModal !== "function") {
      return Promise.resolve(window.confirm(question));
    }
    document.getElementById("confirm-text").textContent = question;
    document.getElementById("confirm-ok").textContent = b.textContent;
    dialog.returnValue = "";
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function () {
        resolve(dialog.returnValue === "ok");
      }, {once: true});
      dialog.showModal();
    });
  }

  main.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-url]");
    if (!b) return;
    var body;
    if (b.dataset.decision) {
      body = {decision: b.dataset.decision};
      var note = b.dataset.note && document.getElementById(b.dataset.note);
      if (note && note.value.trim()) body.note = note.value.trim();
    }
    var method = b.dataset.method, url = b.dataset.url;
    b.disabled = true;
    confirmed(b).then(function (yes) {
      if (!yes) { b.disabled = false; say("nothing done"); return; }
      return call(method, url, body)
        .then(function (d) { say(d.message || "done"); })
        .catch(function (e) { say(e.message, true); })
        .finally(function () { b.disabled = false; refresh(); });
    });
  });
  main.addEventListener("change", function (ev) {
    var t = ev.target;
    if (!t.dataset || !t.dataset.setting) return;
    var body = {}; body[t.dataset.setting] = t.checked;
    call("PUT", "/api/settings", body)
      .then(function () { say(t.dataset.setting + " " + (t.checked ? "on (auto)" : "off (manual)")); })
      .catch(function (e) { t.checked = !t.checked; say(e.message, true); })
      .finally(refresh);
  });
  main.addEventListener("submit", function (ev) {
    var f = ev.target;
    if (!f.hasAttribute("data-settings")) return;
    ev.preventDefault();
    var body = {watch_dir: f.watch_dir.value, max_parallel: parseInt(f.max_parallel.value, 10)};
    call("PUT", "/api/settings", body)
      .then(function () { say("settings saved"); })
      .catch(function (e) { say(e.message, true); })
      .finally(function () { document.activeElement.blur(); refresh(); });
  });
  setInterval(refresh, 2000);
})();
