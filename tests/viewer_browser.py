"""viewer_browser.py URL SHOTS_DIR UPLOAD_IMAGE: drives the viewer in headless Chromium
(Debian's chromium + chromedriver through Selenium; run with /usr/bin/python3).

Loads the latents view, sorts the table (checks the order of the column it sorted),
opens a latent from the table, checks its top images loaded (naturalWidth > 0), opens the
image view, uploads UPLOAD_IMAGE, clicks a patch and checks latents are listed with the
server's time shown, then shows data-set image 3 by its index. Saves a screenshot of each page in SHOTS_DIR (latents.png,
latent.png, image.png). Exits 1 with a message on the first failed check; the browser's
console must hold no error.
"""
import os, sys, tempfile, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, shots, upload_path = sys.argv[1], sys.argv[2], sys.argv[3]
with_probe = len(sys.argv) > 4 and sys.argv[4] == "probe"  # the server was given --probe
os.makedirs(shots, exist_ok=True)

def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--window-size=1400,1400",
          "--user-data-dir=" + tempfile.mkdtemp(prefix="viewer-chromium-")]:
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
wait = WebDriverWait(driver, 60)
try:
    # 1. Latents: the table fills, and sorting by max value orders the rows.
    driver.get(url + "/#/sae/0/latents")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#latents-table tbody tr")) > 0)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#latents-scatter circle")) > 0)
    driver.find_element(By.CSS_SELECTOR, "#latents-table th[data-key=max]").click()
    def column(i):
        out = []
        for tr in driver.find_elements(By.CSS_SELECTOR, "#latents-table tbody tr"):
            out.append(float(tr.find_elements(By.TAG_NAME, "td")[i].text))
        return out
    vals = column(3)
    if len(vals) < 2 or vals != sorted(vals, reverse=True):
        fail(f"max value column not in descending order after sorting: {vals[:10]}")
    driver.find_element(By.CSS_SELECTOR, "#latents-table th[data-key=id]").click()
    ids = column(0)
    if ids != sorted(ids):
        fail(f"id column not ascending after sorting: {ids[:10]}")
    driver.find_element(By.CSS_SELECTOR, "#latents-table th[data-key=max]").click()
    driver.save_screenshot(os.path.join(shots, "latents.png"))
    print(f"latents: {len(vals)} rows, sorted by max value (top {vals[0]})")

    # 2. A latent (the first row: the largest max value) with its top images loaded.
    first = driver.find_element(By.CSS_SELECTOR, "#latents-table tbody tr")
    latent = first.get_attribute("data-latent")
    first.click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "img.top-img")) > 0)
    def all_loaded(d):
        imgs = d.find_elements(By.CSS_SELECTOR, "img.top-img")
        return imgs and all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in imgs)
    wait.until(all_loaded)
    n_img = len(driver.find_elements(By.CSS_SELECTOR, "img.top-img"))
    widths = [driver.execute_script("return arguments[0].naturalWidth", i) for i in driver.find_elements(By.CSS_SELECTOR, "img.top-img")]
    if min(widths) <= 0:
        fail(f"latent {latent}: a top image did not load ({widths})")
    # The view toggle: every mode (heatmap, plain, segmentation where the store has
    # patch labels) loads its pictures, then back to the heatmaps.
    modes = [b.get_attribute("data-mode") for b in driver.find_elements(By.CSS_SELECTOR, "#mode-toggle button")]
    for m in modes[1:] + modes[:1]:
        driver.find_element(By.CSS_SELECTOR, f"#mode-toggle button[data-mode={m}]").click()
        wait.until(lambda d: all(f"mode={m}" in i.get_attribute("src") for i in d.find_elements(By.CSS_SELECTOR, "img.top-img")))
        wait.until(all_loaded)
    print(f"latent {latent}: modes {modes} all loaded")
    if len(driver.find_elements(By.CSS_SELECTOR, "#similar li")) != 10:
        fail("latent page does not list 10 similar latents")
    if not driver.find_elements(By.CSS_SELECTOR, "#latent-hist rect"):
        fail("latent page has no histogram")
    driver.save_screenshot(os.path.join(shots, "latent.png"))
    print(f"latent {latent}: {n_img} top images loaded, widths {min(widths)}..{max(widths)}")

    # 3. Image: upload, click a patch, latents listed, server time shown.
    driver.get(url + "/#/sae/0/image")
    wait.until(lambda d: d.find_elements(By.ID, "upload-file"))
    driver.find_element(By.ID, "upload-file").send_keys(os.path.abspath(upload_path))
    wait.until(lambda d: d.find_elements(By.ID, "patch-grid"))
    wait.until(lambda d: d.execute_script("const i = document.getElementById('image-main'); return i && i.complete && i.naturalWidth"))
    canvas = driver.find_element(By.ID, "patch-grid")
    ActionChains(driver).move_to_element_with_offset(canvas, 30, 20).click().perform()
    wait.until(lambda d: any("latent" in li.text for li in d.find_elements(By.CSS_SELECTOR, "#patch-latents li")))
    listed = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#patch-latents li")]
    timing = driver.find_element(By.ID, "server-time").text
    if "ms" not in timing:
        fail(f"the image page does not show the server's time: {timing!r}")
    def heat_loaded(d):
        imgs = d.find_elements(By.CSS_SELECTOR, "img.heat-img")
        return imgs and all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in imgs)
    wait.until(heat_loaded)
    driver.save_screenshot(os.path.join(shots, "image.png"))
    print(f"image: upload answered ({timing}); patch latents: {listed[:3]}")

    # A data-set image by index, typed into the view's field.
    field = driver.find_element(By.ID, "image-index")
    field.clear()
    field.send_keys("3")
    driver.find_element(By.ID, "image-go").click()
    wait.until(lambda d: "image 3" in d.find_element(By.ID, "server-time").text if d.find_elements(By.ID, "server-time") else False)
    wait.until(lambda d: d.execute_script("const i = document.getElementById('image-main'); return i && i.complete && i.naturalWidth"))
    wait.until(heat_loaded)
    print(f"data-set image 3: {driver.find_element(By.ID, 'server-time').text}")

    # 4. The intervention panel: the before/after prediction shows; moving sliders (each
    # top latent to +10x, then -10x, as a person drags it) changes the displayed prediction.
    if with_probe:
        wait.until(lambda d: d.find_elements(By.ID, "iv-summary"))
        first = driver.find_element(By.ID, "iv-summary").text
        if not first.startswith("0 of"): fail(f"the panel shows a change before any edit: {first!r}")
        def move(slider, value):
            answers = lambda: driver.find_element(By.ID, "iv-result").get_attribute("data-answers")
            old = answers()
            driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))", slider, value)
            wait.until(lambda d: answers() != old)
        changed = None
        for slider in driver.find_elements(By.CSS_SELECTOR, "#iv-sliders input[type=range]"):
            for value in (10, -10):
                move(slider, value)
                shown = driver.find_element(By.ID, "iv-summary").text
                if not shown.startswith("0 of"):
                    changed = (slider.get_attribute("data-latent"), value, shown)
                    break
            if changed: break
            move(slider, 1)
        if not changed: fail(f"no slider of the panel changed the displayed prediction: {first!r}")
        timing = driver.find_element(By.ID, "iv-time").text
        if "server" not in timing or "ms" not in timing: fail(f"the panel does not show the server's time: {timing!r}")
        driver.execute_script("document.getElementById('panel-intervene').scrollIntoView()")
        driver.save_screenshot(os.path.join(shots, "intervene.png"))
        print(f"intervention panel: latent {changed[0]} at {changed[1]}x: {changed[2]} ({timing})")

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    if errors:
        fail(f"browser console errors: {errors}")
finally:
    driver.quit()
print("viewer_browser: ok")
