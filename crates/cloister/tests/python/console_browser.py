"""Drives the console in headless Chromium (Debian's chromium + chromium-driver) through
Selenium's WebDriver client, as a person would: follow the sign-in link, sign in, read the
projects, open a project, skip to its content by keyboard, upload to a bucket, try another
user's project by URL, sign out. Screenshots go to
SCREENSHOT_DIR. Prints one JSON object of what it saw; the Rust test judges it.

usage: console_browser.py PRIMUS_LINK SECUNDUS_LINK OWN_PROJECT OTHER_PROJECT SCREENSHOT_DIR TOKEN TRUST_CHAIN_PATH LIVE_INSTANCE_PATH
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

alice_link, bob_link, own, other, shots, token, chain, live = sys.argv[1:9]
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"):
    options.add_argument(arg)
options.binary_location = "/usr/bin/chromium"
# Debian's driver, never one Selenium would download.
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.implicitly_wait(5)
seen = {}


def alert():
    """The page's alert, once the navigation that shows it is done (a bound against a hung
    browser, not a limit on speed: a loaded machine takes its time)."""
    located = expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]"))
    return WebDriverWait(driver, 60).until(located).text


def follow(element):
    """Clicks a link or a form's button and waits until the page it leads to has replaced this
    one: without the wait, what is read next may come from the old page (under load the old
    page was still there after a sign-out's click). 60 s bounds a hung browser only."""
    # A mark on this page's window: a new document gets a new window object without it.
    # (Selenium's staleness_of is not used: Chromium's driver at times answers a gone node
    # with "Node with given id does not belong to the document", not a stale reference.)
    driver.execute_script("window.cloisterOldPage = true")
    element.click()
    # A script run while the page is being replaced may fail; the wait tries again.
    WebDriverWait(driver, 60, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(
            "return window.cloisterOldPage === undefined && document.readyState === 'complete'"
        )
    )


try:
    def sign_in(link, who):
        driver.delete_all_cookies()
        driver.get(link)
        follow(driver.find_element(By.CSS_SELECTOR, "form[action='/console/login'] button"))
        driver.find_element(By.CSS_SELECTOR, "main h1")
        driver.save_screenshot(os.path.join(shots, f"{who}-projects.png"))
        return [a.text for a in driver.find_elements(By.CSS_SELECTOR, "main table a")]

    seen["primus_projects"] = sign_in(alice_link, "primus")
    seen["primus_cookie_http_only"] = all(
        c.get("httpOnly") for c in driver.get_cookies() if c["name"] == "cloister_session"
    )
    follow(driver.find_element(By.LINK_TEXT, own))
    seen["project_heading"] = driver.find_element(By.CSS_SELECTOR, "main h1").text
    seen["project_roles"] = [
        td.text for td in driver.find_elements(By.CSS_SELECTOR, "main tbody td:first-child")
    ]
    driver.save_screenshot(os.path.join(shots, "primus-project.png"))
    base = alice_link.split("/console/")[0]

    # The keyboard: the first Tab reaches "Skip to content", Enter moves focus to the page.
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    seen["first_tab"] = driver.switch_to.active_element.text
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    seen["after_skip"] = driver.switch_to.active_element.get_attribute("id")

    # A bucket: upload a file through the form; the script shows the bytes sent.
    follow(driver.find_element(By.LINK_TEXT, "gs://primus-models"))
    upload = os.path.join(shots, "weights.bin")
    with open(upload, "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024))
    driver.find_element(By.ID, "u-file").send_keys(upload)
    driver.find_element(By.CSS_SELECTOR, "form[data-upload] button[type=submit]").click()
    status = driver.find_element(By.ID, "upload-status")
    deadline = time.time() + 60
    while not status.text.startswith(("Uploaded", "Refused", "The upload failed")) and time.time() < deadline:
        time.sleep(0.2)
    seen["upload_status"] = status.text
    bar = driver.find_element(By.ID, "upload-progress")
    seen["upload_progress"] = [bar.get_attribute("value"), bar.get_attribute("max")]
    driver.set_window_size(1280, 1000)
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    driver.save_screenshot(os.path.join(shots, "primus-bucket-upload.png"))
    follow(driver.find_element(By.LINK_TEXT, "Show the bucket's objects"))
    seen["bucket_objects"] = [
        a.text for a in driver.find_elements(By.CSS_SELECTOR, "main tbody td:first-child a")
    ]
    driver.save_screenshot(os.path.join(shots, "primus-bucket.png"))
    driver.set_window_size(1280, 800)
    seen["download_href"] = driver.find_element(By.LINK_TEXT, "weights.bin").get_attribute("href")
    provider = f"{base}/console/projects/{own}/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier"

    # The condition playground: judge the saved condition against a pasted token, then a
    # narrowed one; read each clause's verdict.
    def judge(condition):
        driver.get(provider)
        box = driver.find_element(By.ID, "condition")
        box.clear()
        box.send_keys(condition)
        driver.find_element(By.ID, "token").send_keys(token)
        follow(driver.find_element(By.CSS_SELECTOR, "form[action$='/evaluate'] button[type=submit]:not([formaction])"))
        driver.find_element(By.ID, "result")
        return [b.text for b in driver.find_elements(By.CSS_SELECTOR, "table.clauses td:first-child .badge")]

    saved = "assertion.swname == 'CONFIDENTIAL_SPACE' && assertion.submods.container.image_digest == 'sha256:aaaa'"
    seen["playground_before"] = judge(saved)
    seen["playground_after"] = judge(saved.replace("sha256:aaaa", "sha256:bbbb"))
    seen["playground_result"] = driver.find_element(By.ID, "result").text
    seen["playground_unverified"] = "Unverified:" in driver.find_element(By.TAG_NAME, "main").text
    # Tall enough that the shot shows the verdicts below the form.
    driver.set_window_size(1280, 1800)
    driver.save_screenshot(os.path.join(shots, "primus-playground.png"))
    driver.set_window_size(1280, 800)
    driver.get(f"{base}/console/audit?project={own}")
    seen["audit_rows"] = len(driver.find_elements(By.CSS_SELECTOR, "main tbody tr"))
    driver.save_screenshot(os.path.join(shots, "primus-audit.png"))
    # The refused workload's trust chain, as the provider's owner sees it.
    driver.get(base + chain)
    seen["primus_failing_clause"] = driver.find_element(By.CSS_SELECTOR, ".fix code.failing").text
    seen["primus_presented"] = driver.find_element(By.CSS_SELECTOR, ".fix ul").text
    driver.set_window_size(1280, 2400)
    driver.save_screenshot(os.path.join(shots, "primus-trust-chain.png"))
    driver.set_window_size(1280, 800)
    driver.get(f"{base}/console/projects/{own}")
    # Sign out, then the same link again: its code worked once.
    follow(driver.find_element(By.CSS_SELECTOR, ".signout button"))
    seen["after_sign_out"] = driver.current_url
    driver.get(alice_link)
    follow(driver.find_element(By.CSS_SELECTOR, "form[action='/console/login'] button"))
    seen["reused_code"] = alert()

    seen["secundus_projects"] = sign_in(bob_link, "secundus")
    driver.get(f"{base}/console/projects/{own}")
    seen["secundus_on_primus_project"] = alert()
    driver.save_screenshot(os.path.join(shots, "secundus-refused.png"))
    driver.get(base + chain)
    seen["secundus_chain"] = driver.find_element(By.TAG_NAME, "main").text
    driver.set_window_size(1280, 1600)
    driver.save_screenshot(os.path.join(shots, "secundus-trust-chain.png"))
    driver.set_window_size(1280, 800)
    driver.get(provider)
    seen["secundus_on_primus_provider"] = alert()

    # The live serial console: the script appends new output in place. A mark set on the
    # page survives only if the page was not reloaded. Ends when it grew or the instance
    # stopped (the ticker runs a minute), whichever comes first.
    driver.get(base + live)
    pre = driver.find_element(By.CSS_SELECTOR, "pre.console")
    driver.execute_script("window.cloisterMark = 1")
    first = pre.text
    status = driver.find_element(By.ID, "console-status")
    while len(pre.text) <= len(first) and "stopped" not in status.text:
        time.sleep(0.5)
    seen["console_grew"] = len(pre.text) > len(first) and pre.text.startswith(first)
    seen["console_not_reloaded"] = driver.execute_script("return window.cloisterMark") == 1
    driver.set_window_size(1280, 1500)
    driver.save_screenshot(os.path.join(shots, "secundus-live-console.png"))
finally:
    driver.quit()
print(json.dumps(seen))
