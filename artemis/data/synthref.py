"""SynthRef: the project's own deterministic referential video data.

Each video shows 2-4 flat-coloured shapes moving over a noisy, textured background. Every object has
four attribute labels (colour, shape, size, motion) that its description states, so attribute accuracy
can be scored exactly. The generator is a pure function of ``(seed, split, video index, config)``:

* **Seeds.** Video ``i`` of split ``s`` draws from ``SeedSequence(seed, spawn_key=(SPLITS.index(s), i))``,
  so train, val and test with the same seed are different videos (names are prefixed by the split), and
  video ``i`` does not depend on how many videos are generated.
* **Boxes.** Each object's mask is drawn alone (OpenCV, no anti-aliasing) on a frame-sized canvas, so
  the part outside the frame is clipped away; its box is the tight pixel ``xyxy`` of that mask (``x2``,
  ``y2`` exclusive). An object entirely outside the frame has no box (``None``) and is not visible.
* **Occlusion.** Objects are drawn in list order; later ones are on top. An occluded object keeps its
  full (unoccluded, clipped) box. It is *visible* on a frame when at least one pixel of its mask is not
  covered by an object drawn after it; a fully hidden object has a box and ``visible`` False.
* **Key frame.** The frame where the object shows the most unoccluded pixels (the earliest on ties).

Layout, text and annotation writing live in :mod:`artemis.data.synthref_writer` and
:mod:`artemis.data.synthref_text`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from artemis.data.records import Box

SPLITS = ("train", "val", "test")

# Clearly distinct RGB colours on a dark grey background.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 230),
    "yellow": (240, 220, 30),
    "purple": (150, 50, 190),
    "orange": (245, 135, 20),
    "white": (245, 245, 245),
    "cyan": (30, 200, 210),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES = ("small", "large")
# Unit direction of each motion in image coordinates (y grows downwards).
MOTIONS: dict[str, tuple[float, float]] = {
    "still": (0.0, 0.0),
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-math.sqrt(0.5), -math.sqrt(0.5)),
    "up-right": (math.sqrt(0.5), -math.sqrt(0.5)),
    "down-left": (-math.sqrt(0.5), math.sqrt(0.5)),
    "down-right": (math.sqrt(0.5), math.sqrt(0.5)),
}

# Half-extent of an object as a fraction of min(width, height), before a +-1 px jitter.
_SIZE_FRACTION = {"small": 0.07, "large": 0.13}
# Distance travelled over the whole video, as a fraction of min(width, height).
_TRAVEL_RANGE = (0.3, 0.6)
# Probabilities of the scene features the data set is meant to exercise.
_P_SHARE_ATTRIBUTE = 0.7  # a distractor shares colour or shape with an earlier object
_P_CROSSING = 0.35  # a distractor crosses an earlier object's path mid-video (occlusion)
_P_ENTER_LEAVE = 0.25  # a moving object enters or leaves the frame
_MAX_TRIES = 50


@dataclass(frozen=True)
class SynthRefConfig:
    """Settings of a SynthRef split.

    Attributes:
        width: Frame width in pixels.
        height: Frame height in pixels.
        num_frames: Frames per video.
        fps: Frame rate written into the video files.
        min_objects: Fewest objects per video.
        max_objects: Most objects per video.
        frame_folders: Also write every frame as a lossless PNG under ``frames/<video>/``.
    """

    width: int = 128
    height: int = 128
    num_frames: int = 24
    fps: float = 8.0
    min_objects: int = 2
    max_objects: int = 4
    frame_folders: bool = False

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise ValueError(f"SynthRef frames must be at least 32x32, got {self.width}x{self.height}")
        if self.num_frames < 2:
            raise ValueError(f"SynthRef videos need at least 2 frames, got {self.num_frames}")
        if not 1 <= self.min_objects <= self.max_objects <= len(PALETTE):
            raise ValueError(
                f"expected 1 <= min_objects <= max_objects <= {len(PALETTE)}, "
                f"got {self.min_objects} and {self.max_objects}"
            )


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene; its centre at frame ``t`` is ``start + velocity * t`` (pixels).

    Attributes:
        colour: Name of its colour in :data:`PALETTE`.
        shape: One of :data:`SHAPES`.
        size: ``"small"`` or ``"large"``.
        motion: One of :data:`MOTIONS`.
        radius: Half-extent in pixels.
        start: Centre ``(x, y)`` on frame 0.
        velocity: Pixels per frame ``(vx, vy)``.
    """

    colour: str
    shape: str
    size: str
    motion: str
    radius: int
    start: tuple[float, float]
    velocity: tuple[float, float]

    def centre(self, t: int) -> tuple[int, int]:
        """Integer pixel centre on frame ``t`` (rounded half to even, like NumPy)."""
        x = self.start[0] + self.velocity[0] * t
        y = self.start[1] + self.velocity[1] * t
        return int(np.rint(x)), int(np.rint(y))

    @property
    def speed(self) -> float:
        """Pixels per frame."""
        return math.hypot(*self.velocity)


@dataclass(frozen=True)
class Scene:
    """A SynthRef video before rendering: its objects (in draw order, last on top) and its size."""

    name: str
    split: str
    index: int
    width: int
    height: int
    num_frames: int
    objects: tuple[SceneObject, ...]
    background_seed: int


@dataclass(frozen=True)
class ObjectTrack:
    """Ground truth of one object: a box and visibility per frame, and its key frame."""

    boxes: tuple[Box | None, ...]
    visible: tuple[bool, ...]
    visible_pixels: tuple[int, ...]
    key_frame_id: int

    @property
    def enters(self) -> bool:
        """Absent on the first frame and present later."""
        return self.boxes[0] is None

    @property
    def leaves(self) -> bool:
        """Absent on the last frame and present earlier."""
        return self.boxes[-1] is None


def seed_sequence(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The seed stream of video ``index`` of ``split``: distinct per split, independent per video."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), index))


def video_name(split: str, index: int) -> str:
    """``"<split>_<index:05d>"``: names never collide across splits."""
    return f"{split}_{index:05d}"


# --- scene sampling -----------------------------------------------------------------------------------


def _pick_attributes(rng: np.random.Generator, previous: list[SceneObject]) -> tuple[str, str]:
    """Choose (colour, shape), distinct from every earlier object's pair; often sharing one of them.

    Sharing a colour or a shape with an earlier object makes it a distractor: the description alone
    names a unique object only with its other attribute, so the box is needed to tell which one is meant.
    """
    taken = {(o.colour, o.shape) for o in previous}
    colours, shapes = list(PALETTE), list(SHAPES)
    for _ in range(_MAX_TRIES):
        if previous and rng.random() < _P_SHARE_ATTRIBUTE:
            other = previous[int(rng.integers(len(previous)))]
            if rng.random() < 0.5:
                pair = (other.colour, shapes[int(rng.integers(len(shapes)))])
            else:
                pair = (colours[int(rng.integers(len(colours)))], other.shape)
        else:
            pair = (colours[int(rng.integers(len(colours)))], shapes[int(rng.integers(len(shapes)))])
        if pair not in taken:
            return pair
    # Practically unreachable (40 pairs, at most 7 taken); keep the stream deterministic anyway.
    return next((c, s) for c in colours for s in shapes if (c, s) not in taken)


def _place(
    rng: np.random.Generator,
    radius: int,
    velocity: tuple[float, float],
    width: int,
    height: int,
    num_frames: int,
    crossing: SceneObject | None,
) -> tuple[float, float]:
    """Choose the centre on frame 0 so the object mostly stays in view (or enters/leaves on purpose)."""
    span = num_frames - 1
    if crossing is not None:
        # Meet the other object mid-video, so one of them covers the other for a while.
        mid = span // 2
        cx, cy = crossing.centre(mid)
        jitter = rng.integers(-radius // 2, radius // 2 + 1, size=2)
        return cx + float(jitter[0]) - velocity[0] * mid, cy + float(jitter[1]) - velocity[1] * mid

    mode = "inside"
    if velocity != (0.0, 0.0) and rng.random() < _P_ENTER_LEAVE:
        mode = "enters" if rng.random() < 0.5 else "leaves"
    start = []
    for axis, (v, extent) in enumerate(zip(velocity, (width, height), strict=True)):
        travel = v * span
        # Centre range keeping the whole object inside the frame on every frame.
        low, high = radius - min(0.0, travel), extent - radius - max(0.0, travel)
        main_axis = abs(velocity[0]) >= abs(velocity[1])
        if mode != "inside" and v != 0.0 and (axis == 0) == main_axis:
            gap = float(rng.uniform(1.0, 1.0 + abs(travel) / 4))
            if mode == "enters":  # fully outside on frame 0, on the side it comes from
                value = -radius - gap if v > 0 else extent + radius + gap
            else:  # fully outside on the last frame, on the side it goes to
                value = (extent + radius + gap if v > 0 else -radius - gap) - travel
        elif low <= high:
            value = float(rng.uniform(low, high))
        else:  # travel longer than the frame allows: centre the path
            value = (extent - travel) / 2
        start.append(value)
    return start[0], start[1]


def generate_scene(seed: int, split: str, index: int, config: SynthRefConfig | None = None) -> Scene:
    """Sample the scene of video ``index`` of ``split``; a pure function of its arguments.

    Scenes in which some object is never visible (always covered or outside) are resampled from the same
    stream, so the result stays deterministic.
    """
    config = config or SynthRefConfig()
    scene_seq, background_seq = seed_sequence(seed, split, index).spawn(2)
    rng = np.random.default_rng(scene_seq)
    background_seed = int(background_seq.generate_state(1)[0])
    side = min(config.width, config.height)
    scene = None
    for _ in range(_MAX_TRIES):
        count = int(rng.integers(config.min_objects, config.max_objects + 1))
        objects: list[SceneObject] = []
        for _k in range(count):
            colour, shape = _pick_attributes(rng, objects)
            size = SIZES[int(rng.integers(len(SIZES)))]
            radius = max(3, round(_SIZE_FRACTION[size] * side) + int(rng.integers(-1, 2)))
            motion = list(MOTIONS)[int(rng.integers(len(MOTIONS)))]
            speed = float(rng.uniform(*_TRAVEL_RANGE)) * side / (config.num_frames - 1)
            ux, uy = MOTIONS[motion]
            velocity = (ux * speed, uy * speed)
            crossing = None
            if objects and rng.random() < _P_CROSSING:
                crossing = objects[int(rng.integers(len(objects)))]
            start = _place(rng, radius, velocity, config.width, config.height, config.num_frames, crossing)
            objects.append(SceneObject(colour, shape, size, motion, radius, start, velocity))
        scene = Scene(
            name=video_name(split, index),
            split=split,
            index=index,
            width=config.width,
            height=config.height,
            num_frames=config.num_frames,
            objects=tuple(objects),
            background_seed=background_seed,
        )
        if all(any(track.visible) for track in compute_tracks(scene)):
            return scene
    assert scene is not None
    return scene


# --- rendering ----------------------------------------------------------------------------------------


def draw_mask(obj: SceneObject, t: int, width: int, height: int) -> np.ndarray:
    """The object's mask on frame ``t``, drawn alone and clipped to the frame: ``(H, W)`` bool."""
    mask = np.zeros((height, width), dtype=np.uint8)  # (H, W)
    cx, cy = obj.centre(t)
    r = obj.radius
    # Integer vertices and LINE_8 keep the mask binary and identical wherever it is drawn.
    if obj.shape == "circle":
        cv2.circle(mask, (cx, cy), r, 1, thickness=-1, lineType=cv2.LINE_8)
    elif obj.shape == "square":
        cv2.rectangle(mask, (cx - r, cy - r), (cx + r, cy + r), 1, thickness=-1, lineType=cv2.LINE_8)
    elif obj.shape == "triangle":
        points = np.array([[cx, cy - r], [cx + r, cy + r], [cx - r, cy + r]], dtype=np.int32)
        cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8)
    elif obj.shape == "diamond":
        points = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]], dtype=np.int32)
        cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8)
    elif obj.shape == "cross":
        arm = max(1, r // 3)
        cv2.rectangle(mask, (cx - r, cy - arm), (cx + r, cy + arm), 1, thickness=-1, lineType=cv2.LINE_8)
        cv2.rectangle(mask, (cx - arm, cy - r), (cx + arm, cy + r), 1, thickness=-1, lineType=cv2.LINE_8)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}; expected one of {', '.join(SHAPES)}")
    return mask.astype(bool)


def mask_box(mask: np.ndarray) -> Box | None:
    """Tight pixel ``xyxy`` (exclusive ``x2``/``y2``) of a bool mask; ``None`` when it is empty."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def visible_mask(scene: Scene, index: int, t: int) -> np.ndarray:
    """Object ``index``'s pixels that show on frame ``t``: its mask minus the objects drawn over it. (H, W) bool"""
    mask = draw_mask(scene.objects[index], t, scene.width, scene.height)
    for above in scene.objects[index + 1 :]:  # later objects are drawn on top
        mask &= ~draw_mask(above, t, scene.width, scene.height)
    return mask


def box_overlap(scene: Scene, index: int, t: int, box: Sequence[float] | None) -> float:
    """The largest share of another object's visible pixels on frame ``t`` that lies inside ``box`` (object
    ``index``'s box there): how much of another object a box prompt also covers (0 when none does)."""
    if box is None:
        return 0.0
    x1, y1, x2, y2 = (int(v) for v in box)
    share = 0.0
    for other in range(len(scene.objects)):
        if other == index:
            continue
        pixels = visible_mask(scene, other, t)  # (H, W)
        total = int(pixels.sum())
        if total:
            share = max(share, int(pixels[y1:y2, x1:x2].sum()) / total)
    return share


def most_overlapped_frame(scene: Scene, index: int, min_visible: float = 0.5) -> tuple[int, float] | None:
    """The frame where object ``index``'s box covers the largest share of another object (the earliest on
    ties), among the frames where at least ``min_visible`` of its own pixels show and those pixels make a
    mask a user could give (:func:`artemis.regions.mask_box` accepts it: not split into parts far apart by
    an object in front), and that share; None when no frame qualifies. The hardest fair frame to give the
    object by its box."""
    from artemis.errors import BoxError
    from artemis.regions import mask_box as checked_mask_box

    best: tuple[int, float] | None = None
    for t in range(scene.num_frames):
        own = draw_mask(scene.objects[index], t, scene.width, scene.height)
        area = int(own.sum())
        seen = visible_mask(scene, index, t)
        if area == 0 or seen.sum() < min_visible * area:
            continue
        try:
            checked_mask_box(seen, scene.width, scene.height)
        except BoxError:
            continue
        share = box_overlap(scene, index, t, mask_box(own))
        if best is None or share > best[1]:
            best = (t, share)
    return best


def compute_tracks(scene: Scene) -> list[ObjectTrack]:
    """Per-object boxes, visibility and key frame, from masks drawn from the scene (not the video)."""
    n, t_count = len(scene.objects), scene.num_frames
    boxes: list[list[Box | None]] = [[] for _ in range(n)]
    pixels = np.zeros((n, t_count), dtype=np.int64)  # (N, T) unoccluded pixels
    for t in range(t_count):
        covered = np.zeros((scene.height, scene.width), dtype=bool)  # (H, W)
        # From the top of the draw order down, so "covered" holds everything above the current object.
        for k in reversed(range(n)):
            mask = draw_mask(scene.objects[k], t, scene.width, scene.height)
            boxes[k].append(mask_box(mask))
            pixels[k, t] = int(np.count_nonzero(mask & ~covered))
            covered |= mask
    tracks = []
    for k in range(n):
        visible = tuple(bool(p > 0) for p in pixels[k])
        tracks.append(
            ObjectTrack(
                boxes=tuple(boxes[k]),
                visible=visible,
                visible_pixels=tuple(int(p) for p in pixels[k]),
                key_frame_id=int(np.argmax(pixels[k])),
            )
        )
    return tracks


def render_background(scene: Scene) -> np.ndarray:
    """A static, low-frequency textured background with fine noise: ``(H, W, 3)`` int16."""
    rng = np.random.default_rng(scene.background_seed)
    # Mostly grey with a slight tint, and darker than every palette colour, so no patch of background
    # can be mistaken for an object's colour.
    grey = rng.integers(30, 90, size=(5, 5, 1)).astype(np.float32)
    coarse = grey + rng.integers(-12, 13, size=(5, 5, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (scene.width, scene.height), interpolation=cv2.INTER_CUBIC)
    texture += rng.normal(0.0, 6.0, size=texture.shape).astype(np.float32)
    return np.clip(np.rint(texture), 0, 255).astype(np.int16)


def render_frames(scene: Scene) -> np.ndarray:
    """Render the video: ``(T, H, W, 3)`` uint8 RGB."""
    background = render_background(scene)  # (H, W, 3)
    noise_rng = np.random.default_rng([scene.background_seed, 1])
    frames = np.empty((scene.num_frames, scene.height, scene.width, 3), dtype=np.uint8)  # (T, H, W, 3)
    for t in range(scene.num_frames):
        # Per-frame sensor-like noise, so a model cannot rely on a perfectly static background.
        noise = noise_rng.integers(-4, 5, size=background.shape, dtype=np.int16)
        frame = np.clip(background + noise, 0, 255).astype(np.uint8)
        for obj in scene.objects:  # list order is draw order: later objects on top
            frame[draw_mask(obj, t, scene.width, scene.height)] = PALETTE[obj.colour]
        frames[t] = frame
    return frames
