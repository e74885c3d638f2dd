"""The web demo ``artemis serve`` mounts at ``/``: upload a video, draw a box on any frame, track and describe;
or gather several regions (boxes on frames of their own, mask PNGs) and ask a question about them.

:func:`build_demo` turns a model service into a gradio ``Blocks``. Gradio has no box-drawing input, so the
frame is shown by a small ``gr.HTML`` component (:func:`frame_canvas`): an image with a transparent overlay
on which a mouse drag draws a rectangle. Its value carries the frame (a JPEG data URL), the video's size
and the box in the *original* video's pixels, so the box the user draws is the box the model gets, whatever
size the browser shows the frame at. The box also lives in a textbox, where it can be typed.

Results are a text, the video with the track drawn (H.264 MP4, which browsers play; an animated GIF where
the installed PyAV cannot encode H.264) and the track as JSON to download. Every error the library raises on
purpose reaches the user as one line (``gr.Error``), never a traceback.

Several regions live in a ``gr.State``, a list of :class:`~artemis.regions.Region` objects: "Add box as
region" takes the box on the frame shown, "Add mask as region" an uploaded PNG on that frame (read and
checked at once); "Ask about the regions" asks the question, which names them ``<region>`` in the order
they were added (:func:`add_box_region`, :func:`add_mask_region`, :func:`ask_about_regions`).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import gradio as gr
import numpy as np

from artemis.boxes import parse_box_arg, validate_box
from artemis.errors import ArtemisError
from artemis.regions import Region, mask_box
from artemis.serve.regions import MAX_REGIONS
from artemis.track import Track
from artemis.video import opened
from artemis.video.draw import draw_track, h264_available, write_video

if TYPE_CHECKING:
    from artemis.serve.service import ModelService

__all__ = [
    "add_box_region",
    "add_mask_region",
    "ask_about_regions",
    "build_demo",
    "frame_canvas",
    "regions_listing",
]

logger = logging.getLogger(__name__)

if int(gr.__version__.split(".")[0]) < 6:  # gr.HTML's templates and js_on_load, which draw the box, are gradio 6
    raise ImportError(f"the web demo needs gradio>=6, found {gr.__version__}; pip install -U 'gradio>=6'")

# The shown frame is downscaled to this longest side (the box stays in the video's own pixels).
_DISPLAY_MAX_SIDE = 960
# Result files older than this are removed when a new request starts.
_RESULT_MAX_AGE_S = 3600.0


# --- the box-drawing frame component -------------------------------------------------------------------

# Rendered by gradio as a JS template string; `value` is the dict :func:`_canvas_value` builds, or null.
_CANVAS_HTML = """
${value && value.src ? `
<div class="artemis-stage" style="width:min(100%, ${70 * value.width / value.height}vh)">
  <img class="artemis-frame" src="${value.src}" draggable="false" alt="frame ${value.frame}">
  <div class="artemis-box" style="${value.box ? `left:${100 * value.box[0] / value.width}%;top:${
    100 * value.box[1] / value.height}%;width:${100 * (value.box[2] - value.box[0]) / value.width}%;height:${
    100 * (value.box[3] - value.box[1]) / value.height}%` : 'display:none'}"></div>
</div>
<div class="artemis-hint">frame ${value.frame} of 0..${value.num_frames - 1} (${value.width}x${value.height}):
  drag on the frame to draw the target's box</div>` : `
<div class="artemis-empty">Upload a video, pick a frame with the slider and drag on it to draw the target's box.</div>`}
"""

_CANVAS_CSS = """
.artemis-stage { position: relative; line-height: 0;
  cursor: crosshair; user-select: none; touch-action: none; }
.artemis-frame { display: block; width: 100%; height: auto; pointer-events: none; }
.artemis-box { position: absolute; border: 2px solid #ff4040; background: rgba(255, 64, 64, 0.15);
  box-sizing: border-box; pointer-events: none; }
.artemis-hint, .artemis-empty { font-size: 0.85em; opacity: 0.8; padding: 4px 0; }
.artemis-empty { padding: 48px 8px; text-align: center; border: 1px dashed currentColor; }
"""

# Runs once; the template is re-rendered into `element` whenever the value changes, so listeners sit on
# `element` itself and look the stage up on each event. While dragging only the overlay's style moves; the
# value (and with it the template and the box textbox) changes once, on release.
_CANVAS_JS = """
let drag = null;
const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
const toPixels = (event, stage) => {
  const rect = stage.getBoundingClientRect();
  const v = props.value;
  return [clamp((event.clientX - rect.left) * v.width / rect.width, 0, v.width),
          clamp((event.clientY - rect.top) * v.height / rect.height, 0, v.height)];
};
const corners = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
const show = (stage, box) => {
  const v = props.value, overlay = stage.querySelector('.artemis-box');
  overlay.style.display = 'block';
  overlay.style.left = `${100 * box[0] / v.width}%`;
  overlay.style.top = `${100 * box[1] / v.height}%`;
  overlay.style.width = `${100 * (box[2] - box[0]) / v.width}%`;
  overlay.style.height = `${100 * (box[3] - box[1]) / v.height}%`;
};
element.addEventListener('pointerdown', (event) => {
  const stage = event.target.closest('.artemis-stage');
  if (!stage || !props.value || !props.value.src || event.button !== 0) return;
  event.preventDefault();
  stage.setPointerCapture(event.pointerId);
  const start = toPixels(event, stage);
  drag = {stage, start, box: [...start, ...start]};
  show(stage, drag.box);
});
element.addEventListener('pointermove', (event) => {
  if (!drag) return;
  drag.box = corners(drag.start, toPixels(event, drag.stage));
  show(drag.stage, drag.box);
});
const finish = (event) => {
  if (!drag) return;
  const box = corners(drag.start, toPixels(event, drag.stage)).map(Math.round);
  drag = null;
  if (box[2] - box[0] < 2 || box[3] - box[1] < 2) { props.value = {...props.value}; return; }  // a click
  props.value = {...props.value, box};
  trigger('input');
};
element.addEventListener('pointerup', finish);
element.addEventListener('pointercancel', () => { drag = null; props.value = {...props.value}; });
"""

# Client-side listeners: the drawn box into the textbox, a typed box onto the frame.
_BOX_TO_TEXT_JS = "(value) => (value && value.box ? value.box.join(',') : '')"
_TEXT_TO_BOX_JS = """(value, text) => {
  if (!value || !value.src) return value;
  const n = (text || '').split(/[\\s,]+/).filter((p) => p).map(Number);
  const box = n.length === 4 && n.every(Number.isFinite) && n[2] > n[0] && n[3] > n[1] ? n : null;
  return {...value, box};
}"""


def frame_canvas(**kwargs: Any) -> gr.HTML:
    """An HTML component that shows one video frame and lets the user drag a box on it.

    Its value is ``None`` or ``{"src", "frame", "num_frames", "width", "height", "box"}``: ``src`` a
    data URL of the (possibly downscaled) frame, ``width``/``height`` the video's size and ``box`` the
    drawn ``[x1, y1, x2, y2]`` in the video's pixels, or ``None``. Drawing a box fires ``input``.
    """
    return gr.HTML(
        value=None,
        html_template=_CANVAS_HTML,
        css_template=_CANVAS_CSS,
        js_on_load=_CANVAS_JS,
        apply_default_css=False,
        **kwargs,
    )


def _data_url(frame: np.ndarray) -> str:
    """``frame`` ``(H, W, 3)`` RGB as a JPEG data URL, downscaled to ``_DISPLAY_MAX_SIDE``."""
    height, width = frame.shape[:2]
    scale = _DISPLAY_MAX_SIDE / max(height, width)
    if scale < 1:
        frame = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise gr.Error(f"could not encode frame of size {width}x{height} as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")


def _parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    return parse_box_arg(text) if text and text.strip() else None


def _canvas_value(video_path: str, frame_index: int, box_text: str | None) -> dict[str, Any]:
    with opened(video_path) as source:
        if not 0 <= frame_index < source.num_frames:
            raise gr.Error(f"frame {frame_index} is past the end of the video (0..{source.num_frames - 1})")
        image = source.get_frame(frame_index)  # (H, W, 3) uint8 RGB
        num_frames, width, height = source.num_frames, source.width, source.height
    try:
        box = _parse_box(box_text)
    except ArtemisError:
        box = None  # a half-typed box is not drawn; the buttons report what is wrong with it
    return {
        "src": _data_url(image),
        "frame": frame_index,
        "num_frames": num_frames,
        "width": width,
        "height": height,
        "box": list(box) if box else None,
    }


# --- writing results ------------------------------------------------------------------------------------


def _fresh_dir(root: Path) -> Path:
    """A new directory for one request's files; those of requests older than an hour go."""
    now = time.time()
    for old in root.iterdir():
        if old.is_dir() and now - old.stat().st_mtime > _RESULT_MAX_AGE_S:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


def _results(
    root: Path,
    video_path: str,
    track: Track | list[Track],
    result: dict[str, Any],
    caption: str | None,
    label: str | list[str],
    progress: gr.Progress,
) -> tuple[str | None, Any, str]:
    """Draw ``track`` (or several, one label each) on the video and write it (MP4, else GIF) and ``result``
    (JSON).

    Returns:
        The MP4's path (or ``None``), an update of the GIF fallback (shown only when there is a GIF) and
        the JSON's path.
    """
    out = _fresh_dir(root)
    json_path = out / "track.json"
    json_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    with opened(video_path) as source:
        fps = source.fps or track.fps
        frames = progress.tqdm(
            draw_track(source, track, labels=label, captions=caption), total=source.num_frames, desc="drawing"
        )
        if h264_available():  # an H.264 MP4, which browsers play
            mp4 = write_video(out / "track.mp4", frames, fps)
            return str(mp4), gr.update(value=None, visible=False), str(json_path)
        logger.warning("PyAV cannot encode H.264 here; showing the track as a GIF")
        gif = write_video(out / "track.gif", frames, fps)
        return None, gr.update(value=str(gif), visible=True), str(json_path)


# --- several regions ---------------------------------------------------------------------------------------

_NO_REGIONS = "No regions yet: draw a box and *Add box as region*, or upload a mask PNG and *Add mask as region*."


def _region_box(region: Region) -> list[int]:
    if region.mask is None:
        return [round(float(v)) for v in region.box]  # type: ignore[union-attr]
    height, width = region.mask.shape  # type: ignore[union-attr]  (masks are arrays once added)
    return [int(v) for v in mask_box(region.mask, width, height)]  # type: ignore[arg-type]


def regions_listing(regions: list[Region]) -> str:
    """The regions as a Markdown list, in the order the question names them."""
    if not regions:
        return _NO_REGIONS
    lines = []
    for number, region in enumerate(regions, 1):
        box = ",".join(str(v) for v in _region_box(region))
        what = f"box {box}" if region.mask is None else f"mask (its box {box})"
        lines.append(f"{number}. **region{number}**: {what} on frame {region.frame}")
    return "\n".join(lines)


def _add_region(service: ModelService, regions: list[Region], video_path: str | None, region: Region) -> list[Region]:
    if not video_path:
        raise gr.Error("no video yet; upload one first")
    if len(regions) >= MAX_REGIONS:
        raise gr.Error(f"{len(regions)} regions already; ask about at most {MAX_REGIONS} at once")
    return service.check_regions(video_path, [*regions, region])  # masks come back read, as arrays


def add_box_region(
    service: ModelService, regions: list[Region], video_path: str | None, frame: float, box_text: str | None
) -> list[Region]:
    """``regions`` with the box of the box field on ``frame`` added (checked against the video).

    Raises:
        gr.Error: no video or no box yet; ArtemisError: a bad box (the library's message).
    """
    box = _parse_box(box_text)
    if box is None:
        raise gr.Error("no box yet; drag on the frame to draw one, or type x1,y1,x2,y2")
    return _add_region(service, regions, video_path, Region(box=box, frame=int(frame)))


def add_mask_region(
    service: ModelService, regions: list[Region], video_path: str | None, frame: float, mask_path: str | None
) -> list[Region]:
    """``regions`` with the mask PNG at ``mask_path`` on ``frame`` added, read and checked at once (the
    video's size, not empty, one object); messages name the file, not its server path."""
    if not mask_path:
        raise gr.Error("no mask yet; upload a PNG of the video's size whose non-zero pixels mark the target")
    try:
        return _add_region(service, regions, video_path, Region(mask=mask_path, frame=int(frame)))
    except ArtemisError as error:
        raise type(error)(str(error).replace(str(mask_path), Path(mask_path).name)) from None


def ask_about_regions(
    service: ModelService,
    root: Path,
    video_path: str | None,
    regions: list[Region],
    question: str | None,
    progress: gr.Progress,
) -> tuple[str, str | None, Any, str]:
    """Ask ``question`` (naming the regions ``<region>``, in order) and write the results: the answer, the
    video with every region's track drawn (``region1``, ``region2``...) and the JSON."""
    if not video_path:
        raise gr.Error("no video yet; upload one first")
    if not regions:
        raise gr.Error("no regions yet; add the box on this frame with 'Add box as region', or a mask PNG")
    progress(0.05, desc="tracking the regions and answering")
    description = service.ask(video_path, regions, question)
    labels = [f"region{number}" for number in range(1, len(regions) + 1)]
    files = _results(root, video_path, description.tracks, description.to_dict(), description.text, labels, progress)
    return description.text, *files


# --- the app ----------------------------------------------------------------------------------------------


def _visible_summary(track: Track) -> str:
    return f"visible on {int(track.visible.sum())} of {track.num_frames} frames"


def build_demo(service: ModelService) -> gr.Blocks:
    """The gradio app over ``service``; ``artemis serve`` mounts it with ``gr.mount_gradio_app``.

    Args:
        service: the model service; its methods are thread-safe, so the handlers call them directly.
    """
    root = Path(tempfile.mkdtemp(prefix="artemis-demo-"))

    def checked(action: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``action``; the library's own errors become a one-line ``gr.Error``."""

        @functools.wraps(action)  # gradio finds the gr.Progress parameter through the wrapper's signature
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return action(*args, **kwargs)
            except ArtemisError as error:
                raise gr.Error(str(error), print_exception=False) from None

        return run

    def need_video(video_path: str | None) -> str:
        if not video_path:
            raise gr.Error("no video yet; upload one first")
        return video_path

    def need_box(video_path: str, box_text: str | None, frame: int) -> tuple[float, float, float, float]:
        box = _parse_box(box_text)
        if box is None:
            raise gr.Error("no box yet; drag on the frame to draw one, or type x1,y1,x2,y2")
        _, _, width, height = service.check_video(video_path)
        return tuple(validate_box(box, width, height, frame_index=frame).tolist())

    @checked
    def on_video(video_path: str | None) -> tuple[Any, Any, str, list[Region], str]:
        if not video_path:  # a new video (or none) starts with no regions
            return gr.update(value=0, maximum=1, interactive=False), None, "", [], _NO_REGIONS
        num_frames, _, _, _ = service.check_video(video_path)
        slider = gr.update(value=0, minimum=0, maximum=max(num_frames - 1, 1), interactive=num_frames > 1)
        return slider, _canvas_value(video_path, 0, None), "", [], _NO_REGIONS

    @checked
    def on_frame(video_path: str | None, frame: float, box_text: str) -> Any:
        return _canvas_value(video_path, int(frame), box_text) if video_path else None

    @checked
    def on_track(video_path, frame, box_text, progress=gr.Progress()):  # noqa: B008 (gradio's idiom)
        frame = int(frame)
        box = need_box(need_video(video_path), box_text, frame)
        progress(0.05, desc="tracking")
        track = service.track(video_path, box, frame)
        files = _results(root, video_path, track, track.to_json(), None, "target", progress)
        return f"Tracked the target: {_visible_summary(track)}.", *files

    def answer(video_path, frame, box_text, question, progress) -> tuple[str, str | None, Any, str]:
        frame = int(frame)
        box = need_box(need_video(video_path), box_text, frame)
        progress(0.05, desc="tracking and describing")
        description = service.describe(video_path, box, frame, question=question)
        files = _results(
            root, video_path, description.track, description.to_dict(), description.text, "target", progress
        )
        return description.text, *files

    @checked
    def on_describe(video_path, frame, box_text, progress=gr.Progress()):  # noqa: B008
        return answer(video_path, frame, box_text, None, progress)

    @checked
    def on_ask(video_path, frame, box_text, question, progress=gr.Progress()):  # noqa: B008
        if not question or not question.strip():
            raise gr.Error("no question yet; type one, e.g. 'What is the <region> doing?'")
        return answer(video_path, frame, box_text, question.strip(), progress)

    @checked
    def on_track_by_model(video_path, frame, box_text, progress=gr.Progress()):  # noqa: B008
        frame = int(frame)
        box = need_box(need_video(video_path), box_text, frame)
        progress(0.05, desc="the model writes the boxes")
        track = service.track_by_model(video_path, box, frame)
        files = _results(root, video_path, track, track.to_json(), None, "model", progress)
        return f"The model tracked the target: {_visible_summary(track)}.", *files

    @checked
    def on_ground(video_path, expression, progress=gr.Progress()):  # noqa: B008
        if not expression or not expression.strip():
            raise gr.Error("no expression yet; type one, e.g. 'the red circle'")
        progress(0.05, desc="the model finds the target")
        track = service.ground(need_video(video_path), expression.strip())
        files = _results(root, video_path, track, track.to_json(), None, expression.strip(), progress)
        return f"Found {expression.strip()!r}: {_visible_summary(track)}.", *files

    @checked
    def on_add_box(regions, video_path, frame, box_text):
        regions = add_box_region(service, regions, video_path, frame, box_text)
        return regions, regions_listing(regions)

    @checked
    def on_add_mask(regions, video_path, frame, mask_path):
        regions = add_mask_region(service, regions, video_path, frame, mask_path)
        return regions, regions_listing(regions), None

    def on_clear_regions():
        return [], _NO_REGIONS

    @checked
    def on_ask_regions(video_path, regions, question, progress=gr.Progress()):  # noqa: B008
        return ask_about_regions(service, root, video_path, regions, question, progress)

    with gr.Blocks(title="artemis", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"## artemis\n**Model:** {service.card.describe()}", elem_id="artemis-model-card")
        with gr.Row():
            with gr.Column():
                video = gr.Video(
                    label="Video", sources=["upload"], include_audio=True, height=240, elem_id="artemis-video"
                )
                slider = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False, elem_id="artemis-slider")
                canvas = frame_canvas(elem_id="artemis-canvas", min_height=120)
                box = gr.Textbox(
                    label="Box on this frame (x1,y1,x2,y2 in the video's pixels)",
                    placeholder="drag on the frame, or type e.g. 10,20,110,220",
                    elem_id="artemis-box",
                )
                with gr.Row():
                    track_button = gr.Button("Track", elem_id="artemis-track")
                    describe_button = gr.Button("Describe", variant="primary", elem_id="artemis-describe")
                with gr.Row():
                    question = gr.Textbox(
                        label="Question", placeholder="What is the <region> doing?", scale=3, elem_id="artemis-question"
                    )
                    ask_button = gr.Button("Ask", scale=1, elem_id="artemis-ask")
                with gr.Accordion("Several regions (boxes on frames of their own, masks)", open=True):
                    gr.Markdown(
                        "Add the box above as a region on the frame shown, or upload a mask PNG (non-zero pixels, "
                        "the video's size) for this frame; repeat on other frames. Then ask a question naming "
                        "them `<region>`, in the order added, e.g. *Is &lt;region&gt; left of &lt;region&gt;?*"
                    )
                    with gr.Row():
                        add_box_button = gr.Button("Add box as region", elem_id="artemis-add-box")
                        clear_button = gr.Button("Clear regions", elem_id="artemis-clear-regions")
                    with gr.Row():
                        mask_file = gr.File(
                            label="Mask PNG", file_types=[".png"], type="filepath", height=120, elem_id="artemis-mask"
                        )
                        add_mask_button = gr.Button("Add mask as region", elem_id="artemis-add-mask")
                    region_list = gr.Markdown(_NO_REGIONS, elem_id="artemis-regions")
                    ask_regions_button = gr.Button(
                        "Ask about the regions", variant="primary", elem_id="artemis-ask-regions"
                    )
                regions = gr.State([])
                if service.can_write_boxes:
                    with gr.Row():
                        by_model_button = gr.Button("Track by model", elem_id="artemis-track-by-model")
                    with gr.Row():
                        expression = gr.Textbox(
                            label="Expression", placeholder="the red circle", scale=3, elem_id="artemis-expression"
                        )
                        ground_button = gr.Button("Ground", scale=1, elem_id="artemis-ground")
            with gr.Column():
                text = gr.Textbox(label="Answer", lines=3, interactive=False, elem_id="artemis-answer")
                track_video = gr.Video(label="Track", interactive=False, elem_id="artemis-track-video")
                track_gif = gr.Image(label="Track", type="filepath", interactive=False, visible=False)
                track_json = gr.File(label="Track JSON", interactive=False, elem_id="artemis-track-json")

        outputs = [text, track_video, track_gif, track_json]
        video.change(on_video, video, [slider, canvas, box, regions, region_list])
        slider.change(on_frame, [video, slider, box], canvas, trigger_mode="always_last", show_progress="hidden")
        canvas.input(None, canvas, box, js=_BOX_TO_TEXT_JS)
        box.submit(None, [canvas, box], canvas, js=_TEXT_TO_BOX_JS)
        box.blur(None, [canvas, box], canvas, js=_TEXT_TO_BOX_JS)
        track_button.click(on_track, [video, slider, box], outputs)
        describe_button.click(on_describe, [video, slider, box], outputs)
        ask_button.click(on_ask, [video, slider, box, question], outputs)
        question.submit(on_ask, [video, slider, box, question], outputs)
        add_box_button.click(on_add_box, [regions, video, slider, box], [regions, region_list])
        add_mask_button.click(on_add_mask, [regions, video, slider, mask_file], [regions, region_list, mask_file])
        clear_button.click(on_clear_regions, None, [regions, region_list])
        ask_regions_button.click(on_ask_regions, [video, regions, question], outputs)
        if service.can_write_boxes:
            by_model_button.click(on_track_by_model, [video, slider, box], outputs)
            ground_button.click(on_ground, [video, expression], outputs)

    weakref.finalize(demo, shutil.rmtree, root, True)
    return demo
