"""The web page at `/`, in a real headless Chromium against the live service: upload a Set5 image,
wait for the job, then check the comparison slider, zoom, metrics, download and accessibility."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveService

LR_NAME = "img_001_LR.png"


def _open(page: Any, live: LiveService) -> None:
    response = page.goto(f"{live.base_url}/")
    assert response is not None and response.status == 200, "the API must serve service/static/index.html at /"
    assert page.title().startswith("srserve")
    # the model list is fetched from /v1/models on load
    page.wait_for_function("document.querySelector('#model').options.length > 1", timeout=15_000)


def test_upload_compare_and_download(
    page: Any, live: LiveService, data_dir: Path, artifacts_dir: Path, tmp_path: Path
) -> None:
    lr = data_dir / "eval" / "Set5" / "x4" / LR_NAME
    hr = data_dir / "eval" / "Set5" / "x4" / "img_001_HR.png"
    _open(page, live)

    options = page.locator("#model option").all_inner_texts()
    assert any(o.startswith("bicubic") for o in options), options
    page.select_option("#scale", "4")
    page.select_option("#model", "bicubic")
    assert "bicubic" in page.inner_text("#model-info")
    page.set_input_files("#file-input", str(lr))
    assert LR_NAME in page.inner_text("#file-summary")
    assert page.is_hidden("#burst-options")  # one image: no burst controls
    page.set_input_files("#reference", str(hr))

    with page.expect_response(lambda r: r.url.endswith("/v1/upscale") and r.request.method == "POST") as sub:
        page.click("#submit")
    assert sub.value.status == 202
    job_id = sub.value.json()["id"]
    page.locator("#result").wait_for(state="visible", timeout=120_000)
    job = httpx.get(f"{live.base_url}/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"

    # status region (aria-live) and progress bar
    assert page.get_attribute("#status", "aria-live") == "polite"
    assert page.inner_text("#status").startswith("Done")
    assert page.eval_on_selector("#progress", "p => p.value") == 100

    # result and "browser bicubic" layer both at the output size
    size = page.evaluate("[document.querySelector('#result-img').naturalWidth, "
                         "document.querySelector('#result-img').naturalHeight]")  # fmt: skip
    assert size == [512, 512] == [job["result"]["width"], job["result"]["height"]]
    assert page.evaluate("[document.querySelector('#bicubic-canvas').width, "
                         "document.querySelector('#bicubic-canvas').height]") == size  # fmt: skip
    assert "browser bicubic" in page.inner_text("#split-hint")
    # the page's bicubic uses the service's kernel: against the `bicubic` model's output it is the same picture
    max_diff = page.evaluate(
        """async () => {
            const img = document.querySelector('#result-img');
            const bmp = await createImageBitmap(img, {colorSpaceConversion: 'none'});
            const c = document.createElement('canvas'); c.width = bmp.width; c.height = bmp.height;
            const ctx = c.getContext('2d'); ctx.drawImage(bmp, 0, 0);
            const a = ctx.getImageData(0, 0, c.width, c.height).data;
            const cv = document.querySelector('#bicubic-canvas');
            const b = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
            let m = 0;
            for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
            return m;
        }"""
    )
    assert max_diff <= 1

    # the comparison slider is a real range input, operable from the keyboard
    split = page.locator("#split")
    assert split.get_attribute("type") == "range"
    assert page.locator("label[for=split]").inner_text() == "Comparison split"
    split.focus()
    page.keyboard.press("ArrowRight")
    assert split.input_value() == "51"
    assert "51%" in page.eval_on_selector("#result-img", "i => i.style.clipPath")
    page.keyboard.press("Home")
    assert split.input_value() == "0"
    assert "aria-valuetext" in page.eval_on_selector("#split", "s => s.getAttributeNames().join(' ')")

    # zoom: pixel-exact at 100 % (one image pixel per device pixel), pixelated above
    dpr = page.evaluate("window.devicePixelRatio")
    for zoom, pixelated in [("1", True), ("4", True), ("0.5", False)]:
        page.select_option("#zoom", zoom)
        box = page.locator("#stage").bounding_box()
        assert abs(box["width"] - 512 * float(zoom) / dpr) < 0.5
        has_class = page.eval_on_selector("#stage", "s => s.classList.contains('pixelated')")
        assert has_class is pixelated
        rendering = page.eval_on_selector("#result-img", "i => getComputedStyle(i).imageRendering")
        assert (rendering == "pixelated") is pixelated

    # metrics with an explanation each, the same numbers the API reports
    m = job["metrics"]
    expected = {
        "psnr": f"{m['psnr_y']:.2f} dB",
        "ssim": f"{m['ssim_y']:.4f}",
        "gain": f"{m['psnr_y'] - m['bicubic_psnr_y']:+.2f} dB",
        "lr_consistency": f"{m['lr_consistency_psnr']:.2f} dB",
    }
    for key, value in expected.items():
        card = page.locator(f"[data-metric={key}]")
        assert card.locator(".value").inner_text() == value, key
        assert len(card.locator(".explain").inner_text()) > 30, key
    assert re.search(r"queue .*model .*encode", page.locator("[data-metric=timings] .explain").inner_text())

    # download: the very bytes the API serves, with a sensible name
    with page.expect_download() as dl:
        page.click("#download")
    assert dl.value.suggested_filename == "img_001_LR_x4.png"
    saved = tmp_path / "download.png"
    dl.value.save_as(saved)
    assert saved.read_bytes() == httpx.get(f"{live.base_url}/v1/jobs/{job_id}/result").content

    page.select_option("#zoom", "fit")
    page.locator("#split").fill("50")
    page.screenshot(path=str(artifacts_dir / "web_result.png"), full_page=True)


def test_rejected_upload_is_explained(page: Any, live: LiveService, tmp_path: Path) -> None:
    _open(page, live)
    page.set_input_files("#file-input", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": b"nope"}])
    page.select_option("#scale", "2")
    page.click("#submit")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=30_000)
    assert error.get_attribute("role") == "alert"
    assert "not_an_image" in error.inner_text()
    assert page.locator("#result").is_hidden()
    assert page.is_enabled("#submit")  # the user can fix the input and try again


def test_drop_frames_switches_to_burst_and_controls_are_labelled(page: Any, live: LiveService, data_dir: Path) -> None:
    _open(page, live)
    frames = [data_dir / "eval" / "Set5" / "x4" / f"img_00{n}_LR.png" for n in (1, 2)]
    payload = [{"name": f.name, "bytes": list(f.read_bytes())} for f in frames]
    page.evaluate(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) dt.items.add(new File([new Uint8Array(f.bytes)], f.name, {type: 'image/png'}));
            const zone = document.querySelector('#drop-zone');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        payload,
    )
    assert page.evaluate("document.querySelector('#file-input').files.length") == 2
    assert "Burst of 2 frames" in page.inner_text("#file-summary")
    assert page.is_visible("#burst-options")
    assert page.locator("#reference-frame option").count() == 2

    # every form control has a label, and keyboard focus is visible
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.id)"""
    )
    assert unlabelled == []
    page.focus("#file-input")
    assert page.eval_on_selector("#drop-zone", "z => getComputedStyle(z).outlineStyle") == "solid"
