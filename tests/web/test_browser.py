"""The explorer and a report in a real headless Chromium (Debian's chromium + chromedriver).

The page is driven as a person would use it: controls are typed into and chosen from, and
the numbers on the page are compared with fcnkit.arith. Skipped when chromium, its driver
or selenium are missing here; CI installs them (.ci/run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.parse

import pytest

from fcnkit.arith.layer import describe_layer
from fcnkit.errors import InputError
from fcnkit.web.report import write_report

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

# End to end (a browser process per module): slow by the project's rule; pytest -q runs it.
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not CHROMIUM or not shutil.which(CHROMEDRIVER):
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1800",
         # No network: every host name but the loopback fails to resolve.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="fcnkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def severe_console_messages(driver):
    """Console errors, except the 400 answers of the API to a bad configuration (which the
    page shows as the error line: that is the design, not a failure)."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and not (
                entry.get("source") == "network" and "/api/" in entry["message"]
                and "status of 400" in entry["message"])]


def wait_rendered(driver, timeout=30):
    """Wait until the page has drawn the controls' current state."""
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "return document.body.dataset.state === 'ready' && document.body.dataset.rendered "
        "=== new URLSearchParams(readControls()).toString()"))


def set_control(driver, name, value):
    element = driver.find_element(By.ID, name)
    if element.tag_name == "select":
        Select(element).select_by_value(str(value))
    elif element.get_attribute("type") == "checkbox":
        if element.is_selected() != bool(value):
            element.click()
    else:
        element.clear()
        element.send_keys(str(value))


def open_explorer(driver, explorer, hash_state=None):
    url = explorer.url + ("#" + urllib.parse.urlencode(hash_state) if hash_state else "")
    driver.get("about:blank")  # a new page load, not a hash change of the old one
    driver.get(url)
    wait_rendered(driver)


# (kind, convention, size, kernel, stride, padding, dilation, output_padding, ceil_mode)
CONFIGURATIONS = [
    ("conv", "pytorch", 5, 3, 2, 1, 1, 0, False),
    ("conv", "pytorch", 7, 3, 1, 0, 2, 0, False),
    ("conv", "pytorch", 224, 7, 2, 3, 1, 0, False),
    ("conv", "pytorch", 6, 4, 3, 0, 1, 0, False),
    ("conv_transpose", "pytorch", 3, 3, 2, 1, 1, 1, False),
    ("conv_transpose", "pytorch", 16, 4, 2, 1, 1, 0, False),
    ("conv_transpose", "pytorch", 5, 3, 1, 2, 2, 0, False),
    ("pool", "pytorch", 7, 2, 2, 0, 1, 0, True),
    ("pool", "pytorch", 9, 3, 2, 1, 1, 0, False),
    ("pool", "caffe", 7, 3, 2, 0, 1, 0, False),
    ("conv", "caffe", 6, 3, 2, 0, 1, 0, False),
    ("conv", "tensorflow", 500, 3, 2, "same", 1, 0, False),
    ("conv", "tensorflow", 10, 3, 3, "valid", 2, 0, False),
]


def test_output_size_follows_the_controls(browser, explorer):
    open_explorer(browser, explorer)
    names = ("kind", "convention", "size", "kernel", "stride", "padding", "dilation",
             "output_padding", "ceil_mode")
    current = {name: None for name in names}
    for configuration in CONFIGURATIONS:
        kind, convention, size, kernel, stride, padding, dilation, op, ceil = configuration
        # Change only what differs from the previous configuration, as a person would;
        # output_padding and ceil_mode first, so no step asks for them on the wrong kind.
        for name, value in sorted(zip(names, configuration),
                                  key=lambda item: item[0] not in ("output_padding",
                                                                   "ceil_mode")):
            if current[name] != value:
                set_control(browser, name, value)
                current[name] = value
        wait_rendered(browser)
        expected = describe_layer(kind=kind, convention=convention, size=size, kernel=kernel,
                                  stride=stride, padding=padding, dilation=dilation,
                                  output_padding=op, ceil_mode=ceil)["output_size"]
        shown = browser.find_element(By.ID, "output-size").text
        assert shown == str(expected), (kind, convention, size, kernel, stride, padding)
        assert not browser.find_element(By.ID, "error").is_displayed()
    assert severe_console_messages(browser) == []


def test_invalid_configuration_shows_the_library_error(browser, explorer):
    open_explorer(browser, explorer, {"kind": "conv", "size": "3", "kernel": "3"})
    set_control(browser, "kernel", 9)
    wait_rendered(browser)
    with pytest.raises(InputError) as exc:
        describe_layer(size=3, kernel=9, stride=2, padding=1)
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and error.text == str(exc.value)
    assert browser.find_element(By.ID, "output-size").text == "—"
    set_control(browser, "kernel", 3)  # fixing it clears the error
    wait_rendered(browser)
    assert not browser.find_element(By.ID, "error").is_displayed()


@pytest.mark.parametrize(("state", "rows", "cols"), [
    ({"kind": "conv", "size": "6", "kernel": "3", "stride": "1", "padding": "0"}, 16, 36),
    ({"kind": "conv", "size": "5", "kernel": "3", "stride": "2", "padding": "1"}, 9, 25),
    ({"kind": "conv_transpose", "size": "3", "kernel": "3", "stride": "2", "padding": "1",
      "output_padding": "1"}, 36, 9),
])
def test_matrix_view_has_the_right_shape(browser, explorer, state, rows, cols):
    open_explorer(browser, explorer, {**state, "dilation": "1"})
    canvas = browser.find_element(By.ID, "matrix")
    assert (int(canvas.get_attribute("data-rows")), int(canvas.get_attribute("data-cols"))) \
        == (rows, cols)
    assert f"{rows}×{cols}" in browser.find_element(By.ID, "matrix-caption").text


def test_shareable_url_restores_the_configuration(browser, explorer):
    state = {"kind": "pool", "convention": "pytorch", "size": "7", "kernel": "2",
             "stride": "2", "padding": "0", "dilation": "1", "output_padding": "0",
             "ceil_mode": "1", "rates": "2,4,8"}
    open_explorer(browser, explorer, state)
    assert browser.find_element(By.ID, "output-size").text == "4"  # ceil((7-2)/2)+1
    assert browser.find_element(By.ID, "ceil_mode").is_selected()
    assert browser.find_element(By.ID, "gridding-verdict").text == "gridding"
    # Changing a control updates the URL, and the URL alone brings the page back.
    set_control(browser, "size", 9)
    wait_rendered(browser)
    url = browser.current_url
    assert "size=9" in url
    browser.get("about:blank")
    browser.get(url)
    wait_rendered(browser)
    assert browser.find_element(By.ID, "output-size").text == "5"


def test_clicking_an_output_pixel_selects_it(browser, explorer):
    open_explorer(browser, explorer, {"kind": "conv", "size": "5", "kernel": "3",
                                      "stride": "1", "padding": "0"})
    # The animation plays on load and redraws its SVG every 600 ms, which would leave a
    # found cell stale before the click lands: pause it first, as a user looking at one
    # pixel would.
    play = browser.find_element(By.ID, "play")
    if play.text == "Pause":
        play.click()
    cell = browser.find_element(By.CSS_SELECTOR, '.out-cell[data-row="2"][data-col="1"]')
    cell.click()
    wait_rendered(browser)
    assert browser.find_element(By.ID, "row").get_attribute("value") == "2"
    assert browser.find_element(By.ID, "col").get_attribute("value") == "1"
    assert "selected row 7" in browser.find_element(By.ID, "matrix-caption").text


def test_page_works_with_no_network(browser, explorer):
    """Every resource comes from the explorer itself; host names do not even resolve."""
    open_explorer(browser, explorer)
    origin = explorer.url.rstrip("/")
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(origin) for name in resources), resources
    assert browser.find_element(By.ID, "output-size").text == "3"
    browser.execute_script("fetch('http://example.com/').catch(() => { "
                           "document.body.dataset.offline = 'yes'; })")
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.body.dataset.offline") == "yes")


def test_report_renders_curves_and_gallery(browser, fake_runs, tmp_path):
    out = tmp_path / "report.html"
    write_report(fake_runs, out, gallery=1)
    browser.get_log("browser")  # drop earlier messages
    browser.get(out.as_uri())
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    lines = browser.find_elements(By.CSS_SELECTOR, "#chart-loss polyline")
    assert len(lines) == 2 and all(line.is_displayed() for line in lines)
    point = browser.find_elements(By.CSS_SELECTOR, "#chart-miou .point")[0]
    ActionChains(browser).move_to_element(point).perform()
    tooltip = browser.find_element(By.ID, "tooltip")
    WebDriverWait(browser, 5).until(lambda d: tooltip.is_displayed())
    assert tooltip.text == "run-a: epoch 1, val mIoU 0.1"
    images = browser.find_elements(By.CSS_SELECTOR, "#gallery img")
    assert len(images) == 2 * 1 * 4  # two runs, one image each, four panels
    assert all(browser.execute_script("return arguments[0].complete && "
                                      "arguments[0].naturalWidth > 0", img) for img in images)
    assert severe_console_messages(browser) == []


@pytest.mark.skipif(not os.environ.get("FCNKIT_SCREENSHOTS"),
                    reason="set FCNKIT_SCREENSHOTS=1 to refresh docs/img screenshots")
def test_refresh_screenshots(browser, explorer, fake_runs, tmp_path):
    """Regenerate docs/img/explore.png and docs/img/report.png (opt-in)."""
    from pathlib import Path

    img = Path(__file__).resolve().parents[2] / "docs" / "img"
    img.mkdir(exist_ok=True)
    open_explorer(browser, explorer, {"kind": "conv_transpose", "size": "3", "kernel": "3",
                                      "stride": "2", "padding": "1", "output_padding": "1",
                                      "row": "2", "col": "3", "rates": "1,2,5"})
    browser.find_element(By.ID, "play").click()
    time.sleep(0.3)
    browser.save_screenshot(str(img / "explore.png"))
    # The docs show real runs when given (FCNKIT_SCREENSHOT_RUNS=dir1:dir2), else fake ones.
    runs = [p for p in os.environ.get("FCNKIT_SCREENSHOT_RUNS", "").split(":") if p]
    out = tmp_path / "report.html"
    write_report(runs or fake_runs, out, gallery=2)
    browser.get(out.as_uri())
    browser.save_screenshot(str(img / "report.png"))
