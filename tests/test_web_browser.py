"""The web view in a real headless Chromium against a real server (one browser session for
the module): signing in, the collections tree, a dataset page, keyboard navigation, and
hostile text that never runs.  Screenshots are saved under test-artifacts/web/."""

from __future__ import annotations

import pytest

from web_browser import browser, screenshot, sign_in, web_site  # noqa: F401 (fixtures)

pytest.importorskip("selenium")


def _by():
    from selenium.webdriver.common.by import By

    return By


def test_sign_in_and_browse_collections(browser, web_site):
    By = _by()
    browser.delete_all_cookies()
    browser.get(f"{web_site.url}/collections")
    assert "/login?next=" in browser.current_url
    sign_in(browser, web_site, "bob")
    browser.get(f"{web_site.url}/collections")
    names = [e.get_attribute("data-name") for e in browser.find_elements(By.CSS_SELECTOR, "li.collection")]
    assert "demo/run1" in names and "team/secret" not in names
    # the token cookie is out of reach of the page's scripts
    assert browser.execute_script("return document.cookie") == ""
    assert browser.execute_script("return window.__pwned === undefined")
    screenshot(browser, "collections")


def test_dataset_page_and_hostile_header(browser, web_site):
    By = _by()
    sign_in(browser, web_site, "alice")
    browser.get(f"{web_site.url}/datasets/{web_site.ids['hostile-calexp']}")
    assert browser.find_element(By.ID, "storage-class").text == "Image"
    assert browser.execute_script("return window.__pwned === undefined")
    assert "<script>window.__pwned=1</script>" in browser.find_element(By.CSS_SELECTOR, "table.header").text
    screenshot(browser, "dataset")


def test_keyboard_reaches_the_skip_link_and_navigation(browser, web_site):
    By = _by()
    from selenium.webdriver.common.keys import Keys

    sign_in(browser, web_site, "alice")
    browser.get(f"{web_site.url}/")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    focused = []
    for _ in range(6):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        focused.append(browser.switch_to.active_element.text)
    assert "Collections" in focused and "Search" in focused
    # every form control on the login page has a label
    browser.delete_all_cookies()
    browser.get(f"{web_site.url}/login")
    for control in browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select, textarea"):
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']")
