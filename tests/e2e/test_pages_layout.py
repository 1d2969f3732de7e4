"""Public pages in a real Chromium: usable on a 360 px phone, labelled, keyboard, contrast.

Patients are often elderly or on a phone (KBV § 5 Nr. 10: terms readable by everyone).
"""

from __future__ import annotations

import pytest

from tests.support.live import manage_json

pytestmark = pytest.mark.e2e

PAGES = ["/", "/nutzungsbedingungen/", "/datenschutz/", "/faq/", "/impressum/", "/transparenz/"]

# WCAG 2.x contrast of every element that has its own text, against the first opaque
# background up the tree. Returns the offenders.
CONTRAST_JS = """
() => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = parse(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const el of document.body.querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.offsetParent === null) continue;
    const style = getComputedStyle(el);
    const fg = lum(parse(style.color)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const large = parseFloat(style.fontSize) >= 24 ||
      (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) bad.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return bad;
}
"""

UNLABELLED_JS = """
() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((el) => el.type !== "hidden" && el.offsetParent !== null)
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                  && !el.getAttribute("aria-labelledby") && !el.textContent.trim())
  .map((el) => el.outerHTML.slice(0, 80))
"""

FOCUSED_JS = """
() => {
  const el = document.activeElement, box = el.getBoundingClientRect();
  return {cls: el.className, left: box.left, outline: getComputedStyle(el).outlineStyle};
}
"""


@pytest.fixture(scope="module")
def phone(browser):
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="de-DE")
    yield context
    context.close()


def _open(context, url: str):
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url)
    return page, problems


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("language", ["de", "en"])
def test_page_fits_a_360px_phone_without_sideways_scrolling(live_site, phone, path, language):
    server, _seed = live_site
    phone.add_cookies([{"name": "django_language", "value": language, "url": server.url}])
    page, problems = _open(phone, server.url + path)
    try:
        assert page.evaluate("document.documentElement.lang") == language
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        assert page.evaluate(UNLABELLED_JS) == []
        assert page.evaluate(CONTRAST_JS) == []
        assert problems == []  # no CSP violation, script error or missing file
    finally:
        page.close()
        phone.clear_cookies()


def test_call_page_fits_a_360px_phone(live_site, phone):
    server, seed = live_site
    appointment = manage_json(
        server.env, "create_appointment", "--doctor", seed["doctor"]["username"]
    )
    page, _problems = _open(phone, server.url + "/")
    try:
        page.fill("input[name=name]", "Erika Mustermann")
        page.fill("input[name=code]", appointment["patient_code"])
        page.check("input[name=consent]")
        page.click("button[type=submit].primary")
        page.wait_for_url("**/call/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        assert page.evaluate(UNLABELLED_JS) == []
    finally:
        page.close()
        phone.clear_cookies()


def test_keyboard_reaches_skip_link_and_language_switch_with_visible_focus(live_site, phone):
    server, _seed = live_site
    page, _problems = _open(phone, server.url + "/faq/")
    try:
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED_JS)
        assert focused["cls"] == "skip-link" and focused["left"] >= 0
        assert focused["outline"] != "none"
        # Switch the language with the keyboard alone.
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.value") == "en":
                break
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.evaluate("document.documentElement.lang") == "en"
        assert page.url.endswith("/faq/")
    finally:
        page.close()
        phone.clear_cookies()
