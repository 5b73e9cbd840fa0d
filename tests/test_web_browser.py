"""The web view in a real headless Chromium against a real server (one browser session for
the module): signing in, the collections tree, a dataset page, keyboard navigation, and
hostile text that never runs.  Screenshots are saved under test-artifacts/web/."""

from __future__ import annotations

import pytest

from web_browser import browser, screenshot, sign_in, wait_for, web_site  # noqa: F401 (fixtures)

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


def test_search_from_the_form_to_a_dataset_page(browser, web_site):
    By = _by()
    from selenium.webdriver.support.ui import Select

    sign_in(browser, web_site, "alice")
    browser.get(f"{web_site.url}/search")
    Select(browser.find_element(By.ID, "dataset_type")).select_by_value("calexp")
    browser.find_element(By.ID, "collections").send_keys("demo/run1")
    # a dimension name from the list at hand goes into the where-clause at the cursor
    browser.find_element(By.CSS_SELECTOR, "#at-hand summary").click()
    browser.find_element(By.CSS_SELECTOR, "button[data-insert='detector']").click()
    browser.find_element(By.ID, "where").send_keys(" = 1 AND visit >= 2")
    assert browser.find_element(By.ID, "where").get_attribute("value") == "detector = 1 AND visit >= 2"
    browser.find_element(By.ID, "run-search").click()
    wait_for(browser, "#results")
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(rows) == 2  # visits 2 and 3 have a detector-1 calexp
    # sort by visit, descending, with the column header links
    browser.find_element(By.LINK_TEXT, "visit").click()
    wait_for(browser, "th[aria-sort=ascending]")
    browser.find_element(By.PARTIAL_LINK_TEXT, "visit ▲").click()
    wait_for(browser, "th[aria-sort=descending]")
    visits = [r.find_elements(By.TAG_NAME, "td")[3].text for r in
              browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")]
    assert visits == ["3", "2"]
    screenshot(browser, "search")
    # the snippets can be copied, and every control has a label
    for control in browser.find_elements(By.CSS_SELECTOR, "form.search input:not([type=hidden]), form.search "
                                                          "select, form.search textarea"):
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']")
    browser.find_element(By.CSS_SELECTOR, "button[data-copy='snippet-cli']").click()
    from selenium.webdriver.support.ui import WebDriverWait  # the page's script answers the click a moment later

    WebDriverWait(browser, 10).until(
        lambda b: b.find_element(By.CSS_SELECTOR, "button[data-copy='snippet-cli']").text == "Copied")
    browser.find_element(By.CSS_SELECTOR, "#results tbody tr a").click()
    assert wait_for(browser, "#storage-class").text == "Image"


def test_a_malformed_where_clause_shows_the_caret(browser, web_site):
    By = _by()
    sign_in(browser, web_site, "alice")
    browser.get(f"{web_site.url}/search?dataset_type=calexp&where=visit+%3E")
    message = browser.find_element(By.ID, "query-error").text
    assert message.splitlines()[-1].strip() == "^" and "visit >" in message
