"""Page helpers that drive the Gradio UI like a user (clicks, typing, mouse drags on the canvas).

Shared by the browser tests and ``bench/ui_latency.py``. Elements are found by the ``elem_id`` the UI
sets (``#project-select``, ``#editor``, ...), so layout changes do not break the tests.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

T = TypeVar("T")


def wait(driver: WebDriver, cond: Callable[[], T], timeout: float = 30, what: str = "condition",
         poll: float = 0.1, errors_ok: bool = False) -> T:
    """Poll ``cond`` until it returns something truthy; the failure names what was awaited and any
    error toast on the page (so a failed run says why, not just 'timeout'). An error toast ends the wait
    at once unless ``errors_ok`` (for steps that expect one)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            out = cond()
            if out:
                return out
        except (StaleElementReferenceException, WebDriverException) as e:
            last = e
        if not errors_ok:
            errs = [t for t in toasts(driver) if t.startswith("Error")]
            if errs:
                raise AssertionError(f"error shown while waiting for {what}: {errs!r}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; toasts: {toasts(driver)!r}; last: {last}")


def css(driver: WebDriver, selector: str, timeout: float = 30) -> WebElement:
    """The first element matching ``selector``, once there is one: Gradio renders a tab's or a panel's
    contents after the click that opens it, so an immediate lookup races the page."""
    found = wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, selector), timeout, f"element {selector}",
                 errors_ok=True)
    return found[0]


def text_of(driver: WebDriver, elem_id: str) -> str:
    found = driver.find_elements(By.ID, elem_id)
    return found[0].text if found else ""


def toasts(driver: WebDriver) -> list[str]:
    """Texts of Gradio's toast messages (errors, warnings, infos) now on the page."""
    try:
        return [t.text for t in driver.find_elements(By.CSS_SELECTOR, "[data-testid=toast-body]") if t.text]
    except WebDriverException:
        return []


def close_toasts(driver: WebDriver, timeout: float = 10) -> None:
    """Close every toast and wait until they are gone: a closed toast fades out for a moment, and a wait
    started meanwhile would still see its error and stop."""
    def gone() -> bool:
        for b in driver.find_elements(By.CSS_SELECTOR, "[data-testid=toast-close]"):
            with contextlib.suppress(WebDriverException):
                b.click()
        return not toasts(driver)
    wait(driver, gone, timeout, "the toasts to close", errors_ok=True)


def open_ui(driver: WebDriver, base_url: str) -> None:
    driver.get(base_url + "/ui/")
    wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#project-select input"), 60, "the UI to render")
    wait_idle(driver)


def wait_idle(driver: WebDriver, timeout: float = 120, ignore: tuple[str, ...] = ()) -> None:
    """Until no Gradio status tracker shows a pending or running event (but in the components ``ignore``
    names by elem_id)."""
    script = ("return [...document.querySelectorAll('[data-testid=status-tracker]')]"
              ".filter(e => !e.classList.contains('hide') && e.offsetParent !== null"
              " && (e.classList.contains('generating') || e.querySelector('.eta-bar, .progress-text, .loader')))"
              ".map(e => (e.closest('[id]') || {id: '?'}).id)")

    def idle() -> bool:
        return not [b for b in driver.execute_script(script) if b not in ignore]
    time.sleep(0.2)
    try:
        wait(driver, idle, timeout, "the page to finish its pending events")
    except AssertionError as e:  # name the components still busy: the one thing a reader of the failure needs
        raise AssertionError(f"{e}; busy: {driver.execute_script(script)!r}") from None


def count_uploads_from_now(driver: WebDriver) -> None:
    """Start counting the page's file uploads (``uploads_counted``): the image editor uploads its PNGs each
    time the page exports it, so the count says how often that happened (webui/gradio_fixes.py)."""
    driver.execute_script("performance.setResourceTimingBufferSize(10000); performance.clearResourceTimings();")


def uploads_counted(driver: WebDriver) -> int:
    return int(driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/gradio_api/upload')).length"))


def pick_option(driver: WebDriver, dropdown_id: str, label_contains: str, timeout: float = 30) -> None:
    """Open a gr.Dropdown and click the option whose label contains the text."""
    def option() -> WebElement | None:
        css(driver, f"#{dropdown_id} input").click()
        for li in driver.find_elements(By.CSS_SELECTOR, f"#{dropdown_id} li[role=option]"):
            if label_contains in (li.get_attribute("aria-label") or li.text):
                return li
        css(driver, "body").click()
        return None
    wait(driver, option, timeout, f"option {label_contains!r} in #{dropdown_id}").click()


def type_into(driver: WebDriver, elem_id: str, text: str, timeout: float = 30) -> None:
    """Type into a textbox once it is shown (it may belong to a panel that a click has just opened)."""
    def shown() -> WebElement | None:
        found = [e for e in driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")
                 if e.is_displayed()]
        return found[0] if found else None
    box = wait(driver, shown, timeout, f"the textbox #{elem_id}", errors_ok=True)
    box.clear()
    box.send_keys(text)


def open_tab(driver: WebDriver, name: str) -> None:
    for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]"):
        if b.text.strip() == name:
            b.click()
            time.sleep(0.3)
            return
    raise AssertionError(f"no tab {name!r}")


def editor_canvas(driver: WebDriver) -> WebElement:
    return css(driver, "#editor .pixi-target canvas")


def editor_zoom(driver: WebDriver) -> float:
    """The editor's displayed zoom (its toolbar shows e.g. '291%'): screen px per image px."""
    txt = css(driver, "#editor .zoom-number span").text.strip().rstrip("%")
    return float(txt) / 100


def choose_brush(driver: WebDriver, class_index: int) -> None:
    """Brush tool with the class's colour (the swatches are the class palette, in class order)."""
    css(driver, "#editor button[aria-label=Brush]").click()
    time.sleep(0.2)
    css(driver, "#editor button[aria-label=Color]").click()
    swatches = wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#editor menu.swatch button.color"),
                    10, "colour swatches")
    swatches[class_index].click()
    time.sleep(0.2)
    css(driver, "#editor button[aria-label=Color]").click()  # close the palette again
    time.sleep(0.2)


def draw(driver: WebDriver, image_size: tuple[int, int], points: list[tuple[float, float]]) -> None:
    """Drag the mouse through ``points`` given in IMAGE pixel coordinates (the image is centred in the
    canvas at the editor's zoom), as a user draws a stroke."""
    canvas = editor_canvas(driver)
    zoom = editor_zoom(driver)
    w, h = image_size

    def offset(p: tuple[float, float]) -> tuple[int, int]:  # Selenium offsets are from the element's centre
        return round((p[0] - w / 2) * zoom), round((p[1] - h / 2) * zoom)

    chain = ActionChains(driver, duration=20)
    x0, y0 = offset(points[0])
    chain.move_to_element_with_offset(canvas, x0, y0).click_and_hold()
    prev = (x0, y0)
    for p in points[1:]:
        x, y = offset(p)
        chain.move_by_offset(x - prev[0], y - prev[1])
        prev = (x, y)
    chain.release().perform()
    time.sleep(0.3)


def click_image(driver: WebDriver, elem_id: str, image_size: tuple[int, int], xy: tuple[float, float]) -> None:
    """Click pixel ``xy`` of the image shown (scaled to fit, aspect kept) in a gr.Image.

    Waits until the <img> has decoded and been laid out: a click on an image that is still loading
    (a slow, loaded machine) lands on a zero-sized box or on the one being replaced, and no select
    event fires."""
    img = wait(driver, lambda: _loaded_image(driver, elem_id), 60, f"the image in #{elem_id} to load")
    rw, rh = img.size["width"], img.size["height"]
    # object-fit: contain inside the <img> box
    scale = min(rw / image_size[0], rh / image_size[1])
    dx, dy = (xy[0] - image_size[0] / 2) * scale, (xy[1] - image_size[1] / 2) * scale
    ActionChains(driver).move_to_element_with_offset(img, round(dx), round(dy)).click().perform()


def _loaded_image(driver: WebDriver, elem_id: str) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
    if not found:
        return None
    ready = driver.execute_script(
        "const i = arguments[0], r = i.getBoundingClientRect();"
        "return i.complete && i.naturalWidth > 0 && r.width > 0 && r.height > 0;", found[0])
    return found[0] if ready else None


def image_src(driver: WebDriver, elem_id: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
    return (found[0].get_attribute("src") or "") if found else ""


def screenshot(driver: WebDriver, folder: Path, name: str, docs: Path | None = None) -> Path:
    """Full-window PNG into ``folder``; with ``docs`` also a shrunk, 128-colour copy for the docs."""
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            small = im.convert("RGB")
            small.thumbnail((1100, 1100))
            small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(docs / f"{name}.png", optimize=True)
    return path


def scroll_to(driver: WebDriver, elem_id: str) -> Any:
    return driver.execute_script(f"document.getElementById('{elem_id}').scrollIntoView({{block: 'center'}})")
