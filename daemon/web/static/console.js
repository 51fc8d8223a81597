// The followthrough console's only script (served as a file: the page's CSP allows no inline script).
// The preview asks the API every 1.5 s and redraws only when the answer changed, so saving a
// template shows within seconds; everything from the API is set as text, never as markup.
"use strict";

(function () {
  const POLL_MS = 1500;

  // The rule picker goes to that rule's page; the data picker reloads with the chosen event.
  document.querySelectorAll("select[data-navigate]").forEach((select) => {
    select.addEventListener("change", () => { window.location.assign(select.value); });
  });
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => { select.form.submit(); });
  });

  const root = document.getElementById("preview");
  if (!root) {
    return;
  }
  const live = root.querySelector(".live");
  const liveText = root.querySelector("[data-live]");
  const errors = root.querySelector("[data-errors]");
  const errorList = root.querySelector("[data-error-list]");
  const email = root.querySelector("[data-email]");
  const frame = root.querySelector("[data-html]");
  const text = root.querySelector("[data-text]");
  const stale = root.querySelector("[data-stale]");
  const templateName = document.querySelector('[data-field="template"]');
  let last = null;
  let polls = 0;

  function setLive(on, message) {
    live.classList.toggle("on", on);
    live.classList.toggle("off", !on);
    liveText.textContent = message;
  }

  function where(problem) {
    if (!problem.file) {
      return "";
    }
    return problem.line ? problem.file + ", line " + problem.line : problem.file;
  }

  function showErrors(problems) {
    errorList.replaceChildren(
      ...problems.map((problem) => {
        const item = document.createElement("li");
        const place = where(problem);
        if (place) {
          const code = document.createElement("span");
          code.className = "where";
          code.textContent = place + ":";
          item.append(code);
        }
        item.append(problem.message);
        return item;
      })
    );
    errors.hidden = false;
    email.hidden = true;
  }

  function showEmail(data) {
    for (const field of ["subject", "from", "to", "cc"]) {
      const value = data[field];
      const shown = Array.isArray(value) ? value.join(", ") : value;
      root.querySelector('[data-field="' + field + '"]').textContent = shown || "—";
    }
    frame.srcdoc = data.html || "";
    text.textContent = data.text || "";
    errors.hidden = true;
    email.hidden = false;
  }

  // What the running daemon does with this template: a refused edit means it keeps sending the last
  // good version. It checks at each pass, so this is asked less often than the preview.
  async function refreshStale() {
    const response = await fetch("/api/templates", { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) {
      return;
    }
    const note = await response.json();
    const file = templateName ? templateName.textContent : "";
    const mine = (note.refused || []).filter((problem) => problem.file === file);
    stale.replaceChildren(
      ...mine.map((problem) => {
        const line = document.createElement("p");
        const lead = document.createElement("strong");
        lead.textContent = "The running daemon sends the last good version of " + problem.file + ":";
        line.append(lead, " it refused the saved edit (" + (problem.line ? "line " + problem.line + ": " : "") +
          problem.message + ").");
        return line;
      })
    );
    stale.hidden = mine.length === 0;
  }

  function render(status, data) {
    if (data.template && templateName) {
      templateName.textContent = data.template;
    }
    if (status === 401) {
      showErrors([{ message: "Logged out: log in again to see the preview." }]);
    } else if (data.errors && data.errors.length) {
      showErrors(data.errors);
    } else if (data.error) {
      showErrors([{ message: data.error }]);
    } else {
      showEmail(data);
    }
  }

  async function refresh() {
    try {
      const response = await fetch(root.dataset.source, {
        headers: { Accept: "application/json" },
        cache: "no-store",
        credentials: "same-origin",
      });
      const body = await response.text();
      const key = response.status + "\n" + body;
      if (key !== last) {
        last = key;
        let data;
        try {
          data = JSON.parse(body);
        } catch (_) {
          data = { error: "The console answered " + response.status + " without JSON." };
        }
        render(response.status, data);
      }
      setLive(true, "Live: updates within seconds of saving the file.");
      if (polls++ % 4 === 0) {
        await refreshStale();
      }
    } catch (_) {
      setLive(false, "The console cannot be reached; trying again…");
    } finally {
      window.setTimeout(refresh, POLL_MS);
    }
  }

  // "Send a test to me": the address is remembered in this browser; the answer says what happened.
  const form = root.querySelector("[data-testsend]");
  if (form) {
    const to = form.querySelector("[data-test-to]");
    const result = root.querySelector("[data-test-result]");
    const button = form.querySelector("button");
    to.value = window.localStorage.getItem("followthrough.test-to") || "";
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      window.localStorage.setItem("followthrough.test-to", to.value);
      button.disabled = true;
      result.className = "result";
      result.textContent = "Sending…";
      try {
        const response = await fetch("/api/test-send", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          credentials: "same-origin",
          body: JSON.stringify({ rule: root.dataset.rule, event: root.dataset.event || null, to: to.value }),
        });
        const data = await response.json();
        const ok = response.ok;
        result.className = "result " + (ok ? "ok" : "bad");
        result.textContent = ok ? "Sent to " + data.to + ": " + data.subject + (data.note ? " (" + data.note + ")" : "")
          : data.error || "The test was not sent (" + response.status + ").";
      } catch (_) {
        result.className = "result bad";
        result.textContent = "The console cannot be reached.";
      } finally {
        button.disabled = false;
      }
    });
  }

  refresh();
})();
