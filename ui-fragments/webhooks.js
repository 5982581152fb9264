// Progressive enhancement for the webhooks pages. Every action works without
// this file (plain forms and links); with it: the status toggle flips without
// a reload, delete asks in a dialog, details open in a modal, "Select all"
// works per event group, and receiver code has a Copy button. Served from the
// host's own origin (CSP script-src 'self').
(function () {
  "use strict";
  // The token and its field name come from a form the page already has, so
  // the same script works inside a panel that names its CSRF field itself.
  function csrf() {
    var i = document.querySelector("input[data-csrf]");
    if (i) return { name: i.name, value: i.value };
    var m = document.querySelector('meta[name="csrf-token"]');
    return { name: "_csrf", value: m ? m.content : "" };
  }

  // Status toggle without a full reload.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.classList || !form.classList.contains("wh-toggle-form")) return;
    ev.preventDefault();
    var btn = form.querySelector(".wh-switch");
    var body = new URLSearchParams(new FormData(form));
    fetch(form.action, { method: "POST", body: body, credentials: "same-origin", redirect: "manual" })
      .then(function (r) {
        if (r.type !== "opaqueredirect" && !r.ok) throw new Error("HTTP " + r.status);
        var on = btn.getAttribute("aria-checked") !== "true";
        btn.setAttribute("aria-checked", on ? "true" : "false");
        var label = btn.querySelector(".wh-switch-label");
        if (label) label.textContent = on ? "Enabled" : "Disabled";
        // The accessible name says what the next press does.
        var name = btn.getAttribute("data-name");
        if (name !== null) btn.setAttribute("aria-label", (on ? "Disable " : "Enable ") + name);
      })
      .catch(function () { form.submit(); });
  });

  // Delete: confirm in a dialog, then post the same form the page would.
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[data-confirm-delete]");
    if (!a || typeof HTMLDialogElement === "undefined") return;
    ev.preventDefault();
    var d = document.createElement("dialog");
    d.className = "wh-dialog";
    d.setAttribute("aria-labelledby", "wh-del-title");
    var action = a.getAttribute("href").replace(/\/delete$/, "/delete");
    d.innerHTML = '<div class="wh-dialog-head"><strong id="wh-del-title"></strong></div>' +
      '<div class="wh-dialog-body"><p>This permanently deletes the webhook, its pending deliveries and its history. This cannot be undone.</p>' +
      '<form method="post" class="wh-buttons"><input type="hidden" data-csrf-slot>' +
      '<button type="submit" class="wh-btn wh-btn-danger">Delete permanently</button>' +
      '<button type="button" class="wh-btn" data-close autofocus>Cancel</button></form></div>';
    d.querySelector("#wh-del-title").textContent = "Delete " + a.getAttribute("data-confirm-delete") + "?";
    var f = d.querySelector("form");
    f.action = action;
    var t = csrf(), slot = f.querySelector("input[data-csrf-slot]");
    slot.name = t.name;
    slot.value = t.value;
    d.querySelector("[data-close]").addEventListener("click", function () { d.close(); });
    d.addEventListener("close", function () { d.remove(); });
    document.body.appendChild(d);
    d.showModal();
  });

  // Delivery details in a modal.
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[data-details]");
    if (!a || typeof HTMLDialogElement === "undefined") return;
    ev.preventDefault();
    fetch(a.href, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var content = doc.querySelector(".wh-delivery");
        if (!content) throw new Error();
        var d = document.createElement("dialog");
        d.className = "wh-dialog";
        d.id = "wh-details";
        d.setAttribute("aria-label", "Delivery details");
        var head = document.createElement("div");
        head.className = "wh-dialog-head";
        head.innerHTML = '<strong>Delivery details</strong><button type="button" class="wh-btn" data-close>Close</button>';
        var body = document.createElement("div");
        body.className = "wh-dialog-body";
        var inner = document.importNode(content, true);
        // The page behind the modal already says where the admin is.
        var crumbs = inner.querySelector(".wh-crumbs");
        if (crumbs) crumbs.remove();
        localize(inner);
        body.appendChild(inner);
        d.appendChild(head);
        d.appendChild(body);
        head.querySelector("[data-close]").addEventListener("click", function () { d.close(); });
        d.addEventListener("close", function () { d.remove(); });
        document.body.appendChild(d);
        d.showModal();
      })
      .catch(function () { window.location = a.href; });
  });

  // Absolute times in the admin's own time zone, with the zone; the page
  // says UTC without this script.
  var local = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });
  function localize(root) {
    root.querySelectorAll("time[data-local]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) t.textContent = local.format(d);
    });
  }
  localize(document);

  // "Select all" per event group, and it follows the boxes: ticked when all
  // are, mixed when some are.
  function syncSelectAll(group) {
    var all = group.querySelector("input[data-select-all]");
    if (!all) return;
    var boxes = group.querySelectorAll('input[name="events"]');
    var n = group.querySelectorAll('input[name="events"]:checked').length;
    all.checked = boxes.length > 0 && n === boxes.length;
    all.indeterminate = n > 0 && n < boxes.length;
  }
  document.querySelectorAll(".wh-group").forEach(syncSelectAll);
  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (!t.matches) return;
    var group = t.closest && t.closest(".wh-group");
    if (t.matches("input[data-select-all]")) {
      group.querySelectorAll('input[name="events"]').forEach(function (c) { c.checked = t.checked; });
      syncSelectAll(group);
    } else if (t.matches('input[name="events"]') && group) {
      syncSelectAll(group);
    }
  });

  // An invalid form comes back with its error summary focused (autofocus;
  // here too, for a browser that skips it). A link in it focuses its field
  // and scrolls so the field's label or legend shows above it.
  var summary = document.querySelector("[data-error-summary]");
  if (summary && document.activeElement !== summary) summary.focus();
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("[data-error-summary] a[href^='#']");
    var field = a && document.getElementById(a.getAttribute("href").slice(1));
    if (!field) return;
    ev.preventDefault();
    var set = field.closest("fieldset.wh-field");
    var label = (set && set.querySelector("legend")) || (field.labels && field.labels[0]) || field;
    label.scrollIntoView();
    field.focus({ preventScroll: true });
  });

  // Typing a secret on the edit form means replacing it: pick "Replace"
  // while "Keep" is selected (the server does the same without this).
  document.addEventListener("input", function (ev) {
    var t = ev.target;
    if (!t.matches || !t.matches("#wh-secret") || !t.value.trim()) return;
    var keep = document.querySelector('input[name="secret_action"][value="keep"]:checked');
    var replace = document.querySelector('input[name="secret_action"][value="replace"]');
    if (keep && replace) replace.checked = true;
  });

  // Receiver code: a Copy button beside each snippet. Without this script
  // the button stays hidden and the code is there to select.
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.hidden = false;
    b.setAttribute("aria-live", "polite");
    b.addEventListener("click", function () {
      var code = document.getElementById(b.getAttribute("data-copy"));
      if (!code) return;
      function said(label) {
        b.textContent = label;
        setTimeout(function () { b.textContent = "Copy"; }, 2500);
      }
      function select() {
        var range = document.createRange();
        range.selectNodeContents(code);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        said("Selected: press Ctrl+C");
      }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(code.textContent).then(function () { said("Copied"); }, select);
      } else {
        select();
      }
    });
  });
})();
