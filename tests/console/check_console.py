"""Drives the pipe console in headless Chromium (Selenium + chromedriver).

    check_console.py URL SCREENSHOT_DIR load     # the fraud example under load
    check_console.py URL SCREENSHOT_DIR token ADMIN_TOKEN QUERY_TOKEN
    check_console.py URL SCREENSHOT_DIR timing STREAMS   # overview load time

Prints one JSON object with what it saw; fails (exit 1) with the reason
when the console does not do what the test asks.
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("PIPE_TEST_CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
        options.add_argument(arg)
    service = Service(os.environ.get("PIPE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def wait(driver, what, condition, seconds=30):
    # The overview redraws itself every 2 s: an element found a moment
    # ago may be gone (stale); the condition is then asked again.
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: condition(d))
    except TimeoutException:
        raise SystemExit(f"timed out waiting for {what}; page: {driver.find_element(By.TAG_NAME, 'main').text[:2000]}")


def find(driver, css):
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def attribute(driver, css, name):
    """An attribute of the first element `css` selects, found again if the
    page redrew it meanwhile."""
    return wait(driver, f"{css} [{name}]", lambda d: (e := find(d, css)) is not None and e.get_attribute(name))


def click(driver, css):
    """Clicks the first element `css` selects, found again if the page
    redrew it meanwhile."""
    def clicked(d):
        e = find(d, css)
        if e is None:
            return False
        e.click()
        return True
    wait(driver, f"{css} to click", clicked)


def run_sql(driver, sql):
    driver.get(URL + "#/sql")
    editor = wait(driver, "the SQL editor", lambda d: find(d, "#sql-editor"))
    editor.clear()
    editor.send_keys(sql)
    driver.find_element(By.ID, "sql-run").click()
    wait(driver, f"an answer to {sql}", lambda d: find(d, "#sql-result table, #sql-error"))


def under_load(driver, shots):
    seen = {}
    start = time.time()
    driver.get(URL)
    # Both pipelines, with rates above zero (averaged over 10 s of samples).
    for p in ["raw_events_pipeline", "fraud_events_pipeline"]:
        wait(driver, f"{p} with a rate", lambda d: float(
            (find(d, f'tr[data-pipeline="{p}"] td[data-rate]') or d.find_element(By.TAG_NAME, "body")).get_attribute("data-rate") or 0) > 0, 60)
    seen["stream_rate"] = float(attribute(driver, 'tr[data-stream="raw_events_stream"] td[data-rate]', "data-rate"))
    series = 'canvas[data-series="stream:raw_events_stream"]'
    seen["chart_points"] = wait(driver, "a chart with points", lambda d: (c := find(d, series)) is not None and (n := int(c.get_attribute("data-points"))) >= 3 and n)
    seen["stream_state"] = wait(driver, "the stream's state", lambda d: (e := find(d, 'tr[data-stream="raw_events_stream"] .state')) is not None and e.text)
    seen["total_points"] = int(attribute(driver, 'canvas[data-series="total:events"]', "data-points"))
    seen["sinks"] = sorted(e.get_attribute("data-sink") for e in driver.find_elements(By.CSS_SELECTOR, "#sinks tbody tr"))
    seen["overview_ms"] = round((time.time() - start) * 1000)
    driver.save_screenshot(os.path.join(shots, "overview.png"))

    click(driver, 'tr[data-pipeline="fraud_events_pipeline"] a')
    wait(driver, "the pipeline page", lambda d: "INSERT INTO" in d.find_element(By.TAG_NAME, "main").text)
    driver.save_screenshot(os.path.join(shots, "pipeline.png"))
    driver.get(URL + "#/tables/fraud_detection.transactions")
    wait(driver, "the table page", lambda d: "Snapshots" in d.find_element(By.TAG_NAME, "main").text and find(d, "main table"))
    driver.save_screenshot(os.path.join(shots, "table.png"))
    # Time travel is one click away, with the snapshot id exact (> 2^53).
    click(driver, 'main table a[href*="table_at"]')
    wait(driver, "the time-travel query", lambda d: find(d, "#sql-result table, #sql-error"))
    seen["time_travel_error"] = find(driver, "#sql-error").text if find(driver, "#sql-error") else None
    seen["time_travel_rows"] = len(driver.find_elements(By.CSS_SELECTOR, "#sql-result tbody tr"))
    driver.get(URL + "#/streams/raw_events_stream")
    wait(driver, "the stream page", lambda d: "curl -X POST" in d.find_element(By.TAG_NAME, "main").text)
    rejections = find(driver, "#rejections")
    seen["rejections"] = rejections.text if rejections else None
    driver.save_screenshot(os.path.join(shots, "stream.png"))

    run_sql(driver, "SELECT count(*) AS n FROM fraud_detection.transactions WHERE transaction_id LIKE 'known-%'")
    cell = find(driver, "#sql-result td")
    seen["known_count"] = int(cell.text) if cell else None
    seen["stats"] = driver.find_element(By.ID, "sql-stats").text
    driver.save_screenshot(os.path.join(shots, "sql.png"))
    run_sql(driver, "SELECT nope FROM fraud_detection.transactions")
    error = find(driver, "#sql-error")
    seen["error"] = error.text if error else None
    at = find(driver, "#sql-error-at")
    seen["error_at"] = at.text if at else None
    driver.save_screenshot(os.path.join(shots, "sql-error.png"))
    # Nulls (left out of the API's rows) show as null, even in a column
    # named like a property every object has; and a second statement of
    # one visit joins the history, not replaces the first.
    editor = find(driver, "#sql-editor")
    editor.clear()
    editor.send_keys('SELECT NULL AS "constructor", NULL AS "toString", 1 AS n')
    driver.find_element(By.ID, "sql-run").click()
    wait(driver, "the nulls", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sql-result td")) == 3)
    seen["null_cells"] = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#sql-result td")]
    seen["history"] = driver.execute_script('return JSON.parse(localStorage.getItem("pipe-sql-history"))')[:2]

    # Make a sink and a pipeline, then delete both, as a user would.
    driver.get(URL + "#/manage")
    for kind, body in [
        ("sinks", {"name": "console_sink", "type": "iceberg", "namespace": "console", "table": "copies"}),
        ("pipelines", {"name": "console_pipeline", "sql": "INSERT INTO console_sink SELECT * FROM raw_events_stream"}),
    ]:
        box = wait(driver, f"the {kind} form", lambda d: find(d, f"#create-{kind}"))
        driver.execute_script("arguments[0].value = arguments[1]", box, json.dumps(body))
        driver.find_element(By.ID, f"create-{kind}-button").click()
        wait(driver, f"{kind} created", lambda d: find(d, f'tr[data-name="{body["name"]}"]'))
    # Change both in place: a dry run, then for real.
    for kind, name, body, dry, done in [
        ("pipelines", "console_pipeline", {"sql": "INSERT INTO console_sink SELECT * FROM raw_events_stream WHERE amount > 100"},
         "Dry run: pipeline 'console_pipeline' can change", "Changed pipeline 'console_pipeline'"),
        ("sinks", "console_sink", {"roll_interval_secs": 7}, "Dry run: sink 'console_sink' can change", "Changed sink 'console_sink'"),
    ]:
        click(driver, f'button[data-edit="{kind}/{name}"]')
        box = wait(driver, f"the change form of {name}", lambda d: find(d, f"#change-{kind}"))
        driver.execute_script("arguments[0].value = arguments[1]", box, json.dumps(body))
        driver.find_element(By.ID, f"check-{kind}").click()
        wait(driver, f"the dry run of {name}", lambda d: dry in find(d, f"#change-message-{kind}").text)
        driver.find_element(By.ID, f"apply-{kind}").click()
        wait(driver, f"the change of {name}", lambda d: done in find(d, f"#change-message-{kind}").text)
        seen[f"changed_{kind}"] = find(driver, f"#change-message-{kind}").text
    driver.save_screenshot(os.path.join(shots, "manage.png"))
    driver.get(URL)
    wait(driver, "the new pipeline on the overview", lambda d: find(d, 'tr[data-pipeline="console_pipeline"]'))
    driver.get(URL + "#/manage")
    for kind, name in [("pipelines", "console_pipeline"), ("sinks", "console_sink")]:
        click(driver, f'button[data-delete="{kind}/{name}"]')
        driver.switch_to.alert.accept()
        wait(driver, f"{name} gone", lambda d: find(d, f"#message-{kind}") and "Deleted" in find(d, f"#message-{kind}").text)
        wait(driver, f"{name} gone from the list", lambda d: not find(d, f'tr[data-name="{name}"]'))
    seen["created_and_deleted"] = True
    return seen


def give_token(driver, title, token):
    wait(driver, f"the {title} prompt", lambda d: find(d, "#token-dialog[open]") and d.find_element(By.ID, "token-title").text == title)
    driver.find_element(By.ID, "token-input").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()


def sql_answer(driver, sql):
    """Runs `sql` on the SQL page already open; its first cell."""
    wait(driver, "the prompt closed", lambda d: not find(d, "#token-dialog[open]"))
    editor = wait(driver, "the SQL editor", lambda d: find(d, "#sql-editor"))
    editor.clear()
    editor.send_keys(sql)
    driver.find_element(By.ID, "sql-run").click()
    wait(driver, f"an answer to {sql}", lambda d: find(d, "#sql-result td, #sql-error"))
    return find(driver, "#sql-result td, #sql-error").text


def with_token(driver, shots, admin, query):
    driver.get(URL)
    wait(driver, "the token prompt", lambda d: find(d, "#token-dialog[open]"))
    seen = {"prompt": driver.find_element(By.ID, "token-title").text, "data_before_token": find(driver, "#pipelines") is not None}
    driver.save_screenshot(os.path.join(shots, "token.png"))
    driver.find_element(By.ID, "token-input").send_keys("wrong")
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait(driver, "the prompt again", lambda d: find(d, "#token-dialog[open]") and "refused" in d.find_element(By.ID, "token-error").text)
    seen["wrong_token_data"] = find(driver, "#pipelines") is not None
    give_token(driver, "Admin token", admin)
    wait(driver, "the overview after the token", lambda d: find(d, "#pipelines"))
    seen["after_token"] = True
    # The query API has a token of its own: asked for at the first query.
    # (The SQL page lists the tables with a query as it opens.)
    driver.get(URL + "#/sql")
    seen["query_prompt_note"] = wait(driver, "the query token prompt", lambda d: find(d, "#token-dialog[open]") and d.find_element(By.ID, "token-title").text == "Query token" and d.find_element(By.ID, "token-error").text)
    give_token(driver, "Query token", query)
    seen["answer_with_both"] = sql_answer(driver, "SELECT 41 + 1 AS n")

    # A tab with the query token alone: no admin data, and SQL works.
    driver.execute_script("sessionStorage.clear()")
    driver.get("about:blank")
    driver.get(URL)
    wait(driver, "the admin prompt", lambda d: find(d, "#token-dialog[open]"))
    driver.find_element(By.ID, "token-cancel").click()
    wait(driver, "the page without admin data", lambda d: find(d, "#token-again"))
    seen["declined_admin"] = driver.find_element(By.TAG_NAME, "main").text
    seen["data_without_admin"] = find(driver, "#pipelines") is not None
    driver.get(URL + "#/sql")
    give_token(driver, "Query token", query)
    seen["answer_with_query_token"] = sql_answer(driver, "SELECT 41 + 1 AS n")
    driver.save_screenshot(os.path.join(shots, "query-token.png"))
    return seen


def timing(driver, shots, streams):
    """Milliseconds from opening the console to the overview listing every
    stream, the best of five loads (the first also fetches the assets)."""
    times = []
    for _ in range(5):
        driver.get("about:blank")
        start = time.time()
        driver.get(URL)
        wait(driver, f"{streams} streams listed", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#streams tbody tr")) >= streams)
        times.append((time.time() - start) * 1000)
    driver.save_screenshot(os.path.join(shots, "fifty-streams.png"))
    seen = {"first_ms": round(times[0]), "best_ms": round(min(times)), "listed": len(driver.find_elements(By.CSS_SELECTOR, "#streams tbody tr"))}
    # Drawing it again every 2 s: from the figures' arrival to laid out, now
    # and with an hour of samples in every chart (1,800 points each).
    seen["redraw_ms"] = redraws(driver)
    driver.execute_script("""
        const now = Date.now();
        for (const [name, points] of series) {
          points.length = 0;
          for (let i = 1800; i > 0; i--) points.push({ t: now - i * 2000, v: Math.random() * 100 });
        }""")
    seen["redraw_hour_ms"] = redraws(driver)
    seen["charts"] = len(driver.find_elements(By.CSS_SELECTOR, "canvas.chart"))
    return seen


def redraws(driver, count=5):
    """The median of the overview's next `count` redraw times (ms)."""
    times = []
    last = None
    while len(times) < count:
        ms = wait(driver, "a redraw", lambda d: (m := d.find_element(By.ID, "main").get_attribute("data-draw-ms")) and m != last and m)
        last = ms
        times.append(float(ms))
    return sorted(times)[len(times) // 2]


if __name__ == "__main__":
    URL, shots, mode = sys.argv[1].rstrip("/") + "/console/", sys.argv[2], sys.argv[3]
    os.makedirs(shots, exist_ok=True)
    driver = browser()
    try:
        if mode == "load":
            seen = under_load(driver, shots)
        elif mode == "token":
            seen = with_token(driver, shots, sys.argv[4], sys.argv[5])
        else:
            seen = timing(driver, shots, int(sys.argv[4]))
    finally:
        driver.quit()
    print(json.dumps(seen))
