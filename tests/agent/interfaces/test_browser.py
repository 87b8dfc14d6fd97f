"""A real browser (headless Chromium from Debian, driven by Playwright) against `tailor demo`."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.assets, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(real_settings, tmp_path_factory):
    port = free_port()
    home = real_settings.home
    env = dict(os.environ, TAILOR_HOME=str(home), GRADIO_ANALYTICS_ENABLED="False")
    log = open(tmp_path_factory.mktemp("demo") / "demo.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "agent", "demo", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    pytest.fail(f"tailor demo did not come up:\n{log.read()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_type_see_cards_like_and_the_next_turn_changes(demo_url):
    if CHROMIUM is None:
        pytest.fail("no Chromium: install it with `apt-get install chromium` (make test does "
                    "when run as root)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(demo_url)
        expect(page.locator("#header")).to_contain_text("adapter", timeout=60_000)
        page.locator("#msg textarea").fill("I loved Toy Story, something funny")
        page.locator("#msg textarea").press("Enter")
        card = page.locator("#card-0 .tailor-card")
        expect(card).to_be_visible(timeout=120_000)
        # The picks show first; rating opens once their explanations have streamed in.
        for k in range(3):
            expect(page.locator(f"#card-{k} .tailor-card")).not_to_contain_text(
                "writing why", timeout=120_000)
        expect(page.locator("#chat .message").last).not_to_contain_text("writing why")
        liked_title = card.locator("b").inner_text()
        first_cards = [page.locator(f"#card-{k} .tailor-card").get_attribute("data-item")
                       for k in range(3)]
        page.locator("#like-0").click()
        expect(page.locator("#status")).to_contain_text("Noted: you like", timeout=30_000)
        page.locator("#msg textarea").fill("more like that")
        page.locator("#msg textarea").press("Enter")
        # The state line of the new answer names the liked pick, and the cards are new.
        last = page.locator("#chat .message").last
        expect(last).to_contain_text(liked_title.rsplit(" (", 1)[0], timeout=120_000)
        expect(page.locator("#card-0 .tailor-card")).not_to_have_attribute(
            "data-item", first_cards[0], timeout=30_000)
        page.screenshot(path=str(os.environ.get("TAILOR_SCREENSHOT", "/tmp/tailor-ui.png")))
        browser.close()
