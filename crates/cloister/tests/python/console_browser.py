"""Drives the console in headless Chromium (Debian's chromium + chromium-driver) through
Selenium's WebDriver client, as a person would: follow the sign-in link, sign in, read the
projects, open a project, try another user's project by URL, sign out. Screenshots go to
SCREENSHOT_DIR. Prints one JSON object of what it saw; the Rust test judges it.

usage: console_browser.py ALICE_LINK BOB_LINK OWN_PROJECT OTHER_PROJECT SCREENSHOT_DIR
"""
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

alice_link, bob_link, own, other, shots = sys.argv[1:6]
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"):
    options.add_argument(arg)
options.binary_location = "/usr/bin/chromium"
# Debian's driver, never one Selenium would download.
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.implicitly_wait(5)
seen = {}
try:
    def sign_in(link, who):
        driver.delete_all_cookies()
        driver.get(link)
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/login'] button").click()
        driver.find_element(By.CSS_SELECTOR, "main h1")
        driver.save_screenshot(os.path.join(shots, f"{who}-projects.png"))
        return [a.text for a in driver.find_elements(By.CSS_SELECTOR, "main table a")]

    seen["alice_projects"] = sign_in(alice_link, "alice")
    seen["alice_cookie_http_only"] = all(
        c.get("httpOnly") for c in driver.get_cookies() if c["name"] == "cloister_session"
    )
    driver.find_element(By.LINK_TEXT, own).click()
    seen["project_heading"] = driver.find_element(By.CSS_SELECTOR, "main h1").text
    seen["project_roles"] = [
        td.text for td in driver.find_elements(By.CSS_SELECTOR, "main tbody td:first-child")
    ]
    driver.save_screenshot(os.path.join(shots, "alice-project.png"))
    # Sign out, then the same link again: its code worked once.
    driver.find_element(By.CSS_SELECTOR, ".signout button").click()
    seen["after_sign_out"] = driver.current_url
    driver.get(alice_link)
    driver.find_element(By.CSS_SELECTOR, "form[action='/console/login'] button").click()
    seen["reused_code"] = driver.find_element(By.CSS_SELECTOR, "[role=alert]").text

    seen["bob_projects"] = sign_in(bob_link, "bob")
    base = alice_link.split("/console/")[0]
    driver.get(f"{base}/console/projects/{own}")
    seen["bob_on_alices_project"] = driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
    driver.save_screenshot(os.path.join(shots, "bob-refused.png"))
finally:
    driver.quit()
print(json.dumps(seen))
