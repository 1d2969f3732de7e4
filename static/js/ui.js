// DOM helpers for the call page. The page is rendered by Django; scripts only toggle
// `hidden`, classes and data attributes (the CSP forbids inline styles and scripts).
// Text comes from Django's JavaScript catalog (`gettext`, German by default).

// Without the catalog (it failed to load) show the English msgids rather than break.
if (typeof window.gettext !== "function") {
  window.gettext = (text) => text;
  window.pgettext = (_context, text) => text;
  window.interpolate = (format, values) =>
    format.replace(/%\((\w+)\)s/g, (_, name) => String(values[name] ?? ""));
}

export const $ = (selector, scope = document) => scope.querySelector(selector);
export const $$ = (selector, scope = document) => Array.from(scope.querySelectorAll(selector));

/** Translate with named placeholders: t("%(name)s is waiting", {name}). */
export function t(format, values) {
  return values ? interpolate(format, values, true) : format;
}

export class CallUI {
  constructor(root) {
    this.root = root;
    this.status = $('[data-role="status"]', root);
  }

  role(name) {
    return $(`[data-role="${name}"]`, this.root);
  }

  actions(name) {
    return $$(`[data-action="${name}"]`, this.root);
  }

  on(action, handler) {
    for (const element of this.actions(action)) element.addEventListener("click", handler);
  }

  /** Show one view: precheck | waiting | call | ended. */
  setPhase(phase) {
    const changed = this.root.dataset.phase !== phase;
    this.root.dataset.phase = phase;
    // Lets the stylesheet hide page chrome (the language switch reloads the page).
    document.body.dataset.callPhase = phase;
    for (const view of $$("[data-view]", this.root)) view.hidden = view.dataset.view !== phase;
    // Screen readers follow the focus: move it to the new view's heading.
    const heading = changed ? $(`[data-view="${phase}"] h1`, this.root) : null;
    if (heading && phase !== "precheck") heading.focus({ preventScroll: true });
  }

  get phase() {
    return this.root.dataset.phase;
  }

  /** Machine-readable state on the root element (for styling and end-to-end tests). */
  setState(name, value) {
    this.root.dataset[name] = value;
  }

  /** The status line; kind = info | warning | error. An empty message hides it. */
  showStatus(message, kind = "info") {
    this.status.textContent = message || "";
    this.status.hidden = !message;
    this.status.dataset.kind = kind;
  }

  /** A toggle button: aria-pressed plus the label for its current state. */
  setPressed(action, pressed, labelPressed, labelReleased) {
    for (const button of this.actions(action)) {
      button.setAttribute("aria-pressed", String(pressed));
      if (labelPressed) button.textContent = pressed ? labelPressed : labelReleased;
    }
  }

  setText(role, text) {
    const element = this.role(role);
    if (element) element.textContent = text;
  }

  /** Show a text in an element for a few seconds, then hide it again. */
  flash(role, text, ms = 8000) {
    const element = this.role(role);
    if (!element) return;
    element.textContent = text;
    element.hidden = false;
    clearTimeout(element.flashTimer);
    element.flashTimer = setTimeout(() => {
      element.hidden = true;
    }, ms);
  }

  setHidden(role, hidden) {
    const element = this.role(role);
    if (element) element.hidden = hidden;
  }
}
