"""``ArtemisConfig``: one Hugging Face config for the whole Artemis architecture.

The defaults are the published Artemis-7B settings (DESIGN.md): CLIP ViT-L/14 at 224 px, Vicuna-7B
(Llama), 100 video frames, 8 tracked boxes, k-means keeping 4 of them. A tiny test model overrides the
sub-configs and a few sizes; see :func:`tiny_config`.
"""

from __future__ import annotations

from typing import Literal

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from artemis.errors import is_int, is_real

SELECTORS = ("kmeans", "uniform", "random", "all")
BOX_EMBEDDINGS = ("absolute", "relative")
ROI_BACKENDS = ("torchvision", "mmcv")
VIDEO_LAYOUTS = ("pooled", "frames")
FRAME_TOKENS = ("pool", "select")
"""How the ``"frames"`` layout turns a frame's patch grid into its tokens: average pooling or a learned top-k."""
FRAME_SELECT_GRADIENTS = ("straight_through", "none")
FRAME_SELECT_ORDERS = ("raster", "score")
FRAME_SELECT_BOX_TARGETS = ("inside", "centre")
IMAGE_TOKENS = ("video", "patches")
"""What an image sample's ``<video>`` becomes: a one-frame video, or the image's patch tokens (the original)."""
CAPABILITIES = ("describe", "boxes")
# The options that read the answer's "Frame k" words, and so need ``frame_label_ids``.
FRAME_LABEL_OPTIONS = ("frame_index_text", "frame_aligned_positions", "frame_answer_isolation")
"""What a model can be trained to do: describe regions (Artemis), write boxes (Elysium SOT / RSOT)."""

CLIP_VIT_L14_224 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
}
"""Shape of CLIP ViT-L/14 at 224 px (``openai/clip-vit-large-patch14``), Artemis' vision tower."""


def _is_count(value: object) -> bool:
    """A whole number >= 0, and not a bool (YAML's ``yes`` parses as True, which ``int`` would accept)."""
    return is_int(value, minimum=0)


class ArtemisConfig(PreTrainedConfig):
    r"""Configuration of :class:`~artemis.model.modeling.ArtemisForConditionalGeneration`.

    Args:
        vision_config: a ``CLIPVisionConfig`` (or dict). Default: CLIP ViT-L/14 at 224 px.
        text_config: the LLM's config (or dict). Default: a Llama config (Vicuna-7B shape).
        video_token_id: id of the ``<video>`` placeholder in the tokenizer.
        region_token_id: id of the ``<region>`` placeholder in the tokenizer.
        num_frames: frames the video tokens cover; shorter videos are zero-padded to this count.
        video_layout: ``"pooled"`` (Artemis / Video-ChatGPT: ``num_frames`` temporal tokens + one spatial
            token per patch, which loses where things are on each frame) or ``"frames"`` (Elysium-style box
            output: each frame's patch grid average-pooled to ``frame_pool_size`` x ``frame_pool_size``
            tokens, frames in order, so the LLM can say where the target is on every frame).
        frame_pool_size: tokens per side of each frame in the ``"frames"`` layout (adaptive average
            pooling of the patch grid; at most the grid's side). Unused by ``"pooled"``.
        frame_tokens: how the ``"frames"`` layout makes a frame's tokens: ``"pool"`` (the default: the
            ``frame_pool_size`` x ``frame_pool_size`` average-pooled grid) or ``"select"`` (Elysium's
            T-Selector: the frame's tokens on a ``frame_select_grid`` x ``frame_select_grid`` grid are
            scored by a learned ``frame_selector`` and the top ``frame_select_tokens`` are kept, in raster
            order; see :mod:`artemis.model.frame_tokens`).
        frame_select_grid: ``"select"``: the grid side the patch grid is average-pooled to before scoring
            (default: the full patch grid, no pooling; at most the grid's side).
        frame_select_tokens: ``"select"``: tokens kept per frame, between 1 and ``frame_select_grid**2``
            (default: ``frame_pool_size**2``, the token budget of pooling).
        frame_select_gradient: ``"select"``: ``"straight_through"`` (default: the kept tokens are multiplied
            by a gate that is exactly 1 in the forward pass and carries the loss gradient to the scores) or
            ``"none"`` (the released Elysium: a hard top-k, no gradient reaches the selector).
        frame_select_order: ``"select"``: the order of a frame's kept tokens: ``"raster"`` (default, the
            release's: top to bottom, left to right) or ``"score"`` (ours: highest-scoring first, so the token
            the selector ranks most target-like always sits in the frame's first slot, and the LLM can read
            it by its place rather than by comparing contents). Each token's cell still reaches the LLM
            through ``frame_position_embedding``.
        frame_select_query: ``"select"``: also score each frame's tokens against the target when the prompt
            gives its box (SOT: the box on the clip's first frame, passed as ``query_boxes``): the cosine
            similarity of every cell to the mean feature inside that box, through a learned projection and
            scale, is added to the selector's logits, so the kept tokens follow the target rather than
            whatever is salient. Our addition (the release scores each frame on its own); off by default.
        frame_select_centre: with ``frame_select_query``: take that cosine between features centred on
            their frame's mean (each cell minus its frame's mean cell; the query from the first frame so
            centred). A plain background then scores near zero instead of close to the box's mean, which
            the background inside the box pulls towards it. Our addition; off by default.
        frame_select_text_query: with ``frame_select_query``, ours: a sample whose prompt gives no box (RSOT:
            a referring expression) is scored against its prompt instead: the mean embedding of the prompt's
            text tokens through a learned projection into the vision width (``frame_selector.text_proj``)
            takes the box query's place. Without it an RSOT clip's selector has no target to follow. Off by
            default.
        frame_select_text_pool: how that query sums up the prompt's words, ours: ``"mean"`` (the default)
            or ``"attention"`` (a softmax over a learned score of each word, ``frame_selector.text_pool``,
            zero at the start so it begins as the mean): the expression's few words can then outweigh the
            template's many.
        frame_select_box_loss: ``"select"``, ours: in training, the weight of a loss on the selector's logits
            that asks for the target's cells on every frame of a box-output clip (cross-entropy of each
            frame's softmax against the cells whose centre lies in the target's box, from the clip's answer
            boxes; frames where the target is absent add nothing), added to the LM loss. 0 (the default)
            turns it off. Without it the selector learns only through its straight-through gate.
        frame_select_box_target: what that loss asks for, ours: ``"inside"`` (default: every cell whose centre
            lies in the box, alike) or ``"centre"`` (a Gaussian of each cell's distance to the box's centre,
            one cell wide, so the best-ranked cell holds the centre and the next ones lean the way it sits).
        frame_position_init: how that embedding starts: ``"zeros"`` (default) or ``"sincos"`` (a fixed 2D
            sine-cosine code of the cell's column and row, so position is readable before it is learnt).
        frame_context_layers: ``"frames"`` layout, ours: residual blocks of two 3x3 convolutions over each
            frame's feature grid before the selector and the projector (``frame_context``,
            :class:`~artemis.model.frame_tokens.FrameContext`), so each cell's feature carries its
            neighbourhood (an object's shape lies in the layout of its cells). Zero-initialised output: a
            model is unchanged until they train. 0 (default): none.
        frame_stem_grid: ``frame_tokens="select"``, ours: 0 (default) or the side G of a grid finer than the
            vision tower's patch grid (a multiple of it that divides ``image_size``), on which the selector
            scores and keeps cells: each frame's features (after the context blocks) are upsampled to G x G
            and a small convolution over the frame's pixels (``frame_stem``,
            :class:`~artemis.model.frame_tokens.PixelStem`, zero-initialised) is added, so a kept token's cell
            is ``image_size / G`` pixels instead of a patch. ``frame_select_grid`` is then G. Needs the
            frames' pixels: a features cache cannot feed such a model.
        frame_context_time: with ``frame_context_layers``, ours: the first convolution of each block is 3x3x3,
            spanning the previous and the next frame too, so a cell sees what moves (default false).
        frame_index_embedding: ``"frames"`` layout, ours: a learned vector per frame of the clip added to all
            of that frame's tokens (``frame_indices``, :class:`~artemis.model.frame_tokens.FrameIndexEmbedding`),
            so the LLM writing "Frame k: [...]" can find frame k's tokens by content (default false).
        frame_index_text: with ``frame_index_embedding``, ours: the same vector is also added to every text
            token from the number of "Frame k" to the next "Frame" word, so the answer's numbers for frame
            k carry frame k's vector as its video tokens do, and one attention head can match the two
            (default false). Needs ``frame_label_ids``.
        frame_aligned_positions: ``"frames"`` layout, ours: position ids under which the text about frame k
            (after the video) lies as far from frame k's tokens as the text about frame 1 from frame 1's
            (:func:`~artemis.model.frame_tokens.aligned_positions`), so an attention head that reaches back a
            fixed distance reads the frame whose box it writes (default false). Needs ``frame_label_ids``.
        frame_answer_isolation: ``"frames"`` layout, ours: the answer's text about frame k cannot attend to
            its text about frames 1..k-1 (:func:`~artemis.model.frame_tokens.isolation_mask`), so each box
            is read off the video, the prompt and the frame's own prefix, never extrapolated from the boxes
            written before it, and a wrong box cannot pull the next ones along (default false). Needs
            ``frame_label_ids``.
        frame_label_ids: the token ids of the word "Frame" and of the numbers 1..``num_frames`` after it, in
            that order, which :func:`~artemis.model.frame_tokens.frame_tags`,
            :func:`~artemis.model.frame_tokens.aligned_positions` and
            :func:`~artemis.model.frame_tokens.isolation_mask` read (set by
            :func:`~artemis.model.tiny.build_tiny_model`; None: not known).
        frame_position_refine: with ``frame_select_order="score"`` and ``frame_position_embedding``, ours: the
            first token of each frame (the selector's best cell) gets its position embedding not at its
            cell's centre but where the selector places the target inside the 3x3 cells around it (the
            softmax-weighted mean of their centres), read from the embedding table by bilinear
            interpolation. The LLM is then told the target's position to better than a cell, and the
            LM loss reaches the selector's logits through that position. Off by default.
        frame_position_embedding: add a learned embedding of each token's grid cell (the pooled grid, or
            the cell a selected token came from) to every frame token after the projector, so the LLM
            knows where a token lies on its frame. Zero-initialised. ``"frames"`` layout only.
        image_tokens: what an image sample (LLaVA ``image`` records, stages 1-2) becomes: ``"video"`` (the
            default, what every earlier artemis model was trained with: a one-frame video,
            ``num_video_tokens`` tokens) or ``"patches"`` (the original Artemis / Video-LLaVA: the image's
            ``patches_per_side**2`` patch features at ``vision_feature_layer``, each through the projector;
            256 tokens for CLIP ViT-L/14 at 224 px, where a one-frame video is 356 with 99 zero ones). The
            sample's placeholder ids are ``video_token_id`` either way; the ``image_mask`` input tells the
            model which samples are images.
        vision_feature_layer: hidden state of the vision tower used for video tokens (-2, penultimate).
        region_feature_layers: hidden states fused by the region encoder; level 0 is resized to the
            largest map (8x the patch grid with 4 levels), the last keeps the patch grid. Artemis takes
            ``hidden_states[-2::-3]``, reversed, last 4: ``[-11, -8, -5, -2]``.
        region_embed_dim: channels inside the region encoder's fuse module (default: vision width).
        region_hidden_size: width of the flattened RoI feature and of the box embedding (1024).
        region_num_fuse: rounds of 3x3 conv + GroupNorm with neighbouring-level mixing (5).
        region_content_norm: normalise the flattened RoI feature before the box embedding is added:
            ``False`` (the original), ``"layer"`` (LayerNorm; ``True`` means this) or ``"batch"``
            (BatchNorm without affine parameters: every channel keeps unit variance across the RoIs of
            a batch, running statistics at inference). In a tiny model trained from scratch the
            unbounded RoI part grew to ~15x the box part; under a LayerNorm it collapsed instead to one
            constant vector that carried no colour or shape. The tiny recipe uses ``"batch"``
            (docs/design.md).
        region_norm_groups: GroupNorm groups in the fuse module (64).
        region_key_mask: a region given as a mask (``region_masks``) is encoded on the key frame from the
            vision features inside its mask only: the key frame's patch features outside the mask are
            zeroed before the fuse module and RoIAlign (not in the original, which takes boxes only; no
            parameters). ``False`` (the default) encodes every region from its box; a mask then only gives
            its tight box.
        region_mask_frames: with ``region_key_mask``, which region frames a mask prompt is used on: ``"key"``
            (the default) its own frame only; ``"all"`` every region frame, the mask carried onto that
            frame's tracked box (scaled and shifted with it; a stand-in for tracking the mask itself).
        region_mask_mode: with ``region_key_mask``, how a mask prompt enters its region's key token:
            ``"replace"`` (the default) the token pooled from the masked maps takes the box token's place;
            ``"add"`` the box's token stays and a :class:`~artemis.model.region.MaskEmbedding` of the masked
            RoI feature and the mask's shape is added to it (zero until trained; key frame only).
        region_track_token: each region gets one more token, after its selected tracked tokens, that embeds
            the geometry of its whole track (first and last visible box, displacement, velocity and mean
            speed over the region frames; :class:`~artemis.model.region.TrackEmbedding`). Not in the
            original: its RoI tokens carry where the target is only through each token's own box
            embedding, which a small LLM cannot compare across two regions (docs/design.md). ``False``
            (the default) keeps the original ``1 + num_selected`` tokens. ``"relation"``: for each region
            after the first, that token is instead how it relates to the first region given the question
            (:class:`~artemis.model.region.RelationEmbedding`), and the first region's is zero; a lone region
            keeps its geometry token.
        region_relation_loss: with ``region_track_token="relation"``, the weight of the relation token's own
            loss in training: a linear head on the token predicts the answer's first token (cross-entropy,
            added to the LM loss; samples with one region add nothing). 0 turns it off.
        region_lone_track: with ``region_track_token="relation"``, the track token of a lone region:
            ``"geometry"`` (the default) its :class:`~artemis.model.region.TrackEmbedding`; ``"zero"`` a zero
            token, so a model describing one target reads its RoI tokens only, as the original does.
        roi_output_size / roi_sampling_ratio: RoIAlign settings (14, 2).
        roi_backend: ``"torchvision"`` (default, CPU and CUDA) or ``"mmcv"`` (when installed).
        box_embedding: ``"absolute"`` embeds the normalised box only (the original Artemis, needed to load
            its checkpoint); ``"relative"`` also embeds each box's offset from the key-frame box (raw and
            signed by the direction of time) and the token's normalised time, which is what lets a small
            model learn motion (DESIGN.md, docs/design.md).
        num_track_boxes: tracked frames whose RoI tokens the selector chooses from (8).
        selector: ``"kmeans"`` (Artemis), ``"uniform"``, ``"random"`` or ``"all"`` (keep every tracked token).
        num_selected: tokens the selector keeps (4); each region gets ``1 + num_selected`` tokens.
        kmeans_max_iter: k-means iterations (3, as the original).
        kmeans_random_member: in training, pick a random member of each cluster as the original does;
            inference always picks the member nearest each centroid (deterministic).
        selector_padding: how slots are filled when fewer than ``num_selected`` tokens come out (a short
            track whose repeated frames k-means merges): ``"latest"`` (artemis-trained models: sort by
            time, repeat the latest) or ``"original"`` (the original release, set by the importers:
            repeat the last cluster's member in k-means label order, then sort). See docs/checkpoints.md.
        projector_hidden_act: activation of the ``mlp2x_gelu`` projector.
        tasks: what the model was trained to do, among :data:`CAPABILITIES`: ``"describe"`` (answer about
            regions) and ``"boxes"`` (write the target's box on every frame; needs ``video_layout="frames"``).
            Default ``["describe"]``. Asking a model for a task it was not trained for is refused.
    """

    model_type = "artemis"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="clip_vision_model",
            init_kwargs=CLIP_VIT_L14_224,
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    video_token_id: int = 32000
    region_token_id: int = 32001
    num_frames: int = 100
    video_layout: Literal["pooled", "frames"] = "pooled"
    frame_pool_size: int = 4
    frame_tokens: Literal["pool", "select"] = "pool"
    frame_select_grid: int | None = None
    frame_select_tokens: int | None = None
    frame_select_gradient: Literal["straight_through", "none"] = "straight_through"
    frame_select_order: Literal["raster", "score"] = "raster"
    frame_position_embedding: bool = False
    frame_position_refine: bool = False
    frame_select_query: bool = False
    frame_select_centre: bool = False
    frame_select_text_query: bool = False
    frame_select_text_pool: Literal["mean", "attention"] = "mean"
    frame_select_box_loss: float = 0.0
    frame_select_box_target: Literal["inside", "centre"] = "inside"
    frame_position_init: Literal["zeros", "sincos"] = "zeros"
    frame_context_layers: int = 0
    frame_context_time: bool = False
    frame_stem_grid: int = 0
    frame_index_embedding: bool = False
    frame_index_text: bool = False
    frame_aligned_positions: bool = False
    frame_answer_isolation: bool = False
    frame_label_ids: list[int] | None = None
    image_tokens: Literal["video", "patches"] = "video"
    vision_feature_layer: int = -2
    region_feature_layers: list[int] | None = None
    region_embed_dim: int | None = None
    region_hidden_size: int = 1024
    region_num_fuse: int = 5
    region_content_norm: bool | Literal["layer", "batch"] = False
    region_norm_groups: int = 64
    region_key_mask: bool = False
    region_mask_frames: Literal["key", "all"] = "key"
    region_mask_mode: Literal["replace", "add"] = "replace"
    region_track_token: bool | Literal["relation"] = False
    region_relation_loss: float = 1.0
    region_lone_track: Literal["geometry", "zero"] = "geometry"
    roi_output_size: int = 14
    roi_sampling_ratio: int = 2
    roi_backend: Literal["torchvision", "mmcv"] = "torchvision"
    box_embedding: Literal["absolute", "relative"] = "absolute"
    num_track_boxes: int = 8
    selector: Literal["kmeans", "uniform", "random", "all"] = "kmeans"
    num_selected: int = 4
    kmeans_max_iter: int = 3
    kmeans_random_member: bool = False
    selector_padding: Literal["latest", "original"] = "latest"
    projector_hidden_act: str = "gelu"
    tie_word_embeddings: bool = False
    tasks: list[str] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.region_feature_layers is None:
            self.region_feature_layers = [-11, -8, -5, -2]
        self.region_feature_layers = [int(layer) for layer in self.region_feature_layers]
        if self.region_embed_dim is None:
            self.region_embed_dim = self.vision_config.hidden_size
        if self.tasks is None:
            self.tasks = ["describe"]
        self.tasks = [str(task) for task in self.tasks]
        if self.frame_tokens == "select":  # explicit in a saved select model's config.json
            if self.frame_select_grid is None:
                self.frame_select_grid = self.frame_stem_grid or self.patches_per_side
            if self.frame_select_tokens is None:
                self.frame_select_tokens = self.frame_pool_size**2
        self.validate_artemis()

    def validate_artemis(self) -> None:
        """Check the Artemis-specific fields; raise ``ConfigError`` naming the bad value and the fix."""
        from artemis.errors import ConfigError

        def choice(name: str, value: str, valid: tuple[str, ...]) -> None:
            if value not in valid:
                raise ConfigError(f"{name}={value!r} is not valid; expected one of {', '.join(valid)}")

        choice("selector", self.selector, SELECTORS)
        choice("box_embedding", self.box_embedding, BOX_EMBEDDINGS)
        choice("roi_backend", self.roi_backend, ROI_BACKENDS)
        choice("video_layout", self.video_layout, VIDEO_LAYOUTS)
        choice("image_tokens", self.image_tokens, IMAGE_TOKENS)
        choice("selector_padding", self.selector_padding, ("latest", "original"))
        for task in self.tasks:
            choice("tasks entry", task, CAPABILITIES)
        if "boxes" in self.tasks and self.video_layout != "frames":
            raise ConfigError(
                f"tasks={self.tasks} includes 'boxes' but video_layout={self.video_layout!r}; box output needs "
                "per-frame video tokens: set video_layout='frames' or drop 'boxes'"
            )
        if not isinstance(self.region_track_token, bool) and self.region_track_token != "relation":
            raise ConfigError(
                f"region_track_token={self.region_track_token!r} is not valid; expected true, false or 'relation'"
            )
        if not isinstance(self.region_relation_loss, (int, float)) or self.region_relation_loss < 0:
            raise ConfigError(
                f"region_relation_loss={self.region_relation_loss!r} is not valid; expected a number >= 0 "
                "(1.0 by default)"
            )
        if self.region_mask_frames not in ("key", "all"):
            raise ConfigError(f"region_mask_frames={self.region_mask_frames!r} is not valid; expected 'key' or 'all'")
        if self.region_mask_mode not in ("replace", "add"):
            raise ConfigError(f"region_mask_mode={self.region_mask_mode!r} is not valid; expected 'replace' or 'add'")
        if self.region_lone_track not in ("geometry", "zero"):
            raise ConfigError(
                f"region_lone_track={self.region_lone_track!r} is not valid; expected 'geometry' or 'zero'"
            )
        if self.region_mask_mode == "add" and self.region_mask_frames != "key":
            raise ConfigError(
                "region_mask_mode='add' adds the mask's embedding to the key token only; set "
                f"region_mask_frames='key' (it is {self.region_mask_frames!r}) or region_mask_mode='replace'"
            )
        if self.region_content_norm not in (False, True, "layer", "batch"):
            raise ConfigError(
                f"region_content_norm={self.region_content_norm!r} is not valid; expected false, 'layer' or 'batch'"
            )
        if self.video_layout == "frames" and not 1 <= self.frame_pool_size <= self.patches_per_side:
            raise ConfigError(
                f"frame_pool_size={self.frame_pool_size} must be between 1 and the patch grid's side "
                f"{self.patches_per_side} (image_size {self.vision_config.image_size} / patch_size "
                f"{self.vision_config.patch_size}); e.g. frame_pool_size=4"
            )
        self._validate_frame_tokens(choice)
        if self.num_frames < 1:
            raise ConfigError(f"num_frames={self.num_frames} must be >= 1")
        num_hidden = self.vision_config.num_hidden_layers + 1  # embeddings + one per layer
        for layer in [self.vision_feature_layer, *self.region_feature_layers]:
            if not -num_hidden <= layer < num_hidden:
                raise ConfigError(
                    f"vision layer {layer} does not exist: the vision tower has {num_hidden} hidden states "
                    f"(use -{num_hidden}..{num_hidden - 1})"
                )
        if self.selector != "all" and not 1 <= self.num_selected <= self.num_track_boxes:
            raise ConfigError(
                f"num_selected={self.num_selected} must be between 1 and num_track_boxes={self.num_track_boxes}"
            )
        if self.region_embed_dim % 4 or self.region_embed_dim % self.region_norm_groups:
            raise ConfigError(
                f"region_embed_dim={self.region_embed_dim} must be divisible by 4 and by "
                f"region_norm_groups={self.region_norm_groups}"
            )

    def _validate_frame_tokens(self, choice) -> None:
        from artemis.errors import ConfigError

        def flag(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"{name}={value!r} is not valid; expected true or false")

        choice("frame_tokens", self.frame_tokens, FRAME_TOKENS)
        choice("frame_select_gradient", self.frame_select_gradient, FRAME_SELECT_GRADIENTS)
        choice("frame_select_order", self.frame_select_order, FRAME_SELECT_ORDERS)
        choice("frame_select_box_target", self.frame_select_box_target, FRAME_SELECT_BOX_TARGETS)
        choice("frame_position_init", self.frame_position_init, ("zeros", "sincos"))
        flag("frame_position_embedding")
        if self.video_layout != "frames":
            settings = (
                ("frame_tokens", self.frame_tokens, "pool"),
                ("frame_position_embedding", self.frame_position_embedding, False),
                ("frame_context_layers", self.frame_context_layers, 0),
                ("frame_index_embedding", self.frame_index_embedding, False),
                ("frame_aligned_positions", self.frame_aligned_positions, False),
                ("frame_answer_isolation", self.frame_answer_isolation, False),
            )
            for name, value, default in settings:
                if value != default:
                    raise ConfigError(
                        f"{name}={value!r} applies to per-frame video tokens but video_layout={self.video_layout!r}; "
                        f"set video_layout='frames' or {name}={default!r}"
                    )
        flag("frame_select_query")
        if self.frame_select_query and self.frame_tokens != "select":
            raise ConfigError(
                f"frame_select_query=true scores the frame selector's tokens but frame_tokens={self.frame_tokens!r}; "
                "set frame_tokens='select' or frame_select_query=false"
            )
        flag("frame_select_centre")
        if self.frame_select_centre and not self.frame_select_query:
            raise ConfigError(
                "frame_select_centre=true centres the features of the selector's target query, but "
                "frame_select_query=false; set frame_select_query=true or frame_select_centre=false"
            )
        flag("frame_select_text_query")
        if self.frame_select_text_pool not in ("mean", "attention"):
            raise ConfigError(
                f"frame_select_text_pool={self.frame_select_text_pool!r} is not valid; expected 'mean' or 'attention'"
            )
        if self.frame_select_text_pool == "attention" and not self.frame_select_text_query:
            raise ConfigError(
                "frame_select_text_pool='attention' pools the words of the selector's text query, but "
                "frame_select_text_query=false; set frame_select_text_query=true or frame_select_text_pool='mean'"
            )
        if self.frame_select_text_query and not self.frame_select_query:
            raise ConfigError(
                "frame_select_text_query=true scores the frame selector against the prompt where no box is given, "
                "but frame_select_query=false; set frame_select_query=true or frame_select_text_query=false"
            )
        loss = self.frame_select_box_loss
        if not is_real(loss, minimum=0):
            raise ConfigError(f"frame_select_box_loss={loss!r} is not valid; expected a number >= 0 (0: off)")
        if loss and self.frame_tokens != "select":
            raise ConfigError(
                f"frame_select_box_loss={loss!r} trains the frame selector, but frame_tokens={self.frame_tokens!r}; "
                "set frame_tokens='select' or frame_select_box_loss=0"
            )
        layers = self.frame_context_layers
        if not _is_count(layers):
            raise ConfigError(f"frame_context_layers={layers!r} is not valid; expected a whole number >= 0 (0: none)")
        flag("frame_context_time")
        if self.frame_context_time and not layers:
            raise ConfigError(
                "frame_context_time=true makes the context blocks span neighbouring frames, but "
                "frame_context_layers=0; set frame_context_layers to 1 or more, or frame_context_time=false"
            )
        flag("frame_index_embedding")
        flag("frame_index_text")
        if self.frame_index_text and not self.frame_index_embedding:
            raise ConfigError(
                "frame_index_text=true adds each frame's index vector to the text about that frame, which needs "
                "frame_index_embedding=true; set both, or frame_index_text=false"
            )
        flag("frame_aligned_positions")
        flag("frame_answer_isolation")
        labels = self.frame_label_ids
        if self.reads_frame_labels and (
            not isinstance(labels, (list, tuple))
            or len(labels) != self.num_frames + 1
            or not all(is_int(i, minimum=0) for i in labels)
        ):
            raise ConfigError(
                f"{', '.join(FRAME_LABEL_OPTIONS)} need frame_label_ids: the token ids of 'Frame' and "
                f"of the numbers 1..{self.num_frames}, {self.num_frames + 1} ids in all (got {labels!r}); build the "
                "model with artemis.model.build_tiny_model, or set them from the tokenizer"
            )
        flag("frame_position_refine")
        if self.frame_position_refine and not (
            self.frame_tokens == "select" and self.frame_select_order == "score" and self.frame_position_embedding
        ):
            raise ConfigError(
                "frame_position_refine=true refines the position of each frame's best-scoring token, which needs "
                f"frame_tokens='select' (got {self.frame_tokens!r}), frame_select_order='score' (got "
                f"{self.frame_select_order!r}) and frame_position_embedding=true "
                f"(got {self.frame_position_embedding!r})"
            )
        self._validate_frame_stem()
        if self.frame_tokens != "select":
            return
        side = self.patches_per_side
        if self.frame_stem_grid:
            if self.frame_select_grid != self.frame_stem_grid:
                raise ConfigError(
                    f"frame_select_grid={self.frame_select_grid} but frame_stem_grid={self.frame_stem_grid}: with a "
                    "pixel stem the selector scores the stem's grid; set frame_select_grid to "
                    f"{self.frame_stem_grid} or leave it unset"
                )
            side = self.frame_stem_grid
        if not 1 <= self.frame_select_grid <= side:
            raise ConfigError(
                f"frame_select_grid={self.frame_select_grid} must be between 1 and the patch grid's side {side} "
                f"(image_size {self.vision_config.image_size} / patch_size {self.vision_config.patch_size}); "
                f"e.g. frame_select_grid={side} (score every patch)"
            )
        cells = self.frame_select_grid**2
        if not 1 <= self.frame_select_tokens <= cells:
            raise ConfigError(
                f"frame_select_tokens={self.frame_select_tokens} must be between 1 and frame_select_grid**2={cells} "
                f"(the tokens a {self.frame_select_grid}x{self.frame_select_grid} grid has); lower it or raise "
                "frame_select_grid"
            )

    def _validate_frame_stem(self) -> None:
        from artemis.errors import ConfigError

        stem = self.frame_stem_grid
        if not _is_count(stem):
            raise ConfigError(f"frame_stem_grid={stem!r} is not valid; expected 0 (no stem) or a grid side such as 32")
        if not stem:
            return
        if self.video_layout != "frames" or self.frame_tokens != "select":
            raise ConfigError(
                f"frame_stem_grid={stem} gives the frame selector a finer grid; it needs video_layout='frames' and "
                f"frame_tokens='select' (got {self.video_layout!r} and {self.frame_tokens!r}); set them or "
                "frame_stem_grid=0"
            )
        side, size = self.patches_per_side, self.vision_config.image_size
        if stem <= side or stem % side or size % stem:
            raise ConfigError(
                f"frame_stem_grid={stem} must be a multiple of the patch grid's side {side} above it that divides "
                f"image_size {size} (each cell of the finer grid is a whole number of pixels); e.g. "
                f"frame_stem_grid={2 * side}"
            )

    # --- derived sizes --------------------------------------------------------------------------

    @property
    def reads_frame_labels(self) -> bool:
        """Whether an option that reads the answer's "Frame k" words (``FRAME_LABEL_OPTIONS``) is on."""
        return any(getattr(self, name) for name in FRAME_LABEL_OPTIONS)

    @property
    def patches_per_side(self) -> int:
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def num_video_tokens(self) -> int:
        """Tokens one ``<video>`` expands to.

        ``"pooled"``: ``num_frames`` temporal + one spatial token per patch. ``"frames"``:
        :attr:`tokens_per_frame` tokens per frame for ``num_frames`` frames.
        """
        if self.video_layout == "frames":
            return self.num_frames * self.tokens_per_frame
        return self.num_frames + self.patches_per_side**2

    @property
    def num_image_tokens(self) -> int:
        """Tokens an image sample's ``<video>`` expands to: ``patches_per_side**2`` (``image_tokens="patches"``)
        or :attr:`num_video_tokens` (``"video"``: a one-frame video)."""
        if self.image_tokens == "patches":
            return self.patches_per_side**2
        return self.num_video_tokens

    @property
    def tokens_per_frame(self) -> int:
        """Video tokens of one frame in the ``"frames"`` layout: ``frame_pool_size**2`` (pool) or
        ``frame_select_tokens`` (select)."""
        if self.frame_tokens == "select":
            return self.frame_select_tokens
        return self.frame_pool_size**2

    @property
    def frame_feature_grid(self) -> int:
        """Side of the grid each frame's features are average-pooled to (``"frames"``; what a features cache
        stores): ``frame_pool_size`` (pool) or ``frame_select_grid`` (select, the grid the selector scores);
        with ``frame_stem_grid`` the patch grid itself, which the stem then refines."""
        if self.frame_stem_grid:
            return self.patches_per_side
        return self.frame_select_grid if self.frame_tokens == "select" else self.frame_pool_size

    @property
    def frame_token_grid(self) -> int:
        """Side of the grid a frame's tokens come from (``"frames"``): ``frame_stem_grid`` with a stem, else
        :attr:`frame_feature_grid`. The cell position embedding has one row per cell of it."""
        return self.frame_stem_grid or self.frame_feature_grid

    @property
    def num_video_features(self) -> int:
        """Rows of ``pool_video_features`` (what a features cache stores): :attr:`num_video_tokens`, except
        with ``frame_tokens="select"``, where every cell of each frame's grid is kept for the selector."""
        if self.video_layout == "frames":
            return self.num_frames * self.frame_feature_grid**2
        return self.num_video_tokens

    @property
    def num_region_tokens(self) -> int:
        """Tokens one ``<region>`` expands to: the key-frame token, the selected tracked tokens and, with
        ``region_track_token``, the track token."""
        kept = self.num_track_boxes if self.selector == "all" else self.num_selected
        return 1 + kept + int(bool(self.region_track_token))

    @property
    def num_region_frames(self) -> int:
        """Frames whose features the region encoder reads: the key frame plus the tracked frames."""
        return 1 + self.num_track_boxes


def tiny_config(**overrides) -> ArtemisConfig:
    """A tiny random-weight configuration for tests and the CPU recipe (about a million parameters).

    Vision: a 3-layer CLIP at 32 px with 4 px patches (8x8 patches). Text: a 2-layer Llama of width 64.
    ``overrides`` replace any top-level field, e.g. ``tiny_config(selector="uniform")``.
    """
    vision = {
        "model_type": "clip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 4,
        "projection_dim": 32,
    }
    text = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 128,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    settings = {
        "vision_config": vision,
        "text_config": text,
        "video_token_id": 3,
        "region_token_id": 4,
        "num_frames": 8,
        "vision_feature_layer": -2,
        "region_feature_layers": [-3, -2, -1],
        "region_hidden_size": 32,
        "region_num_fuse": 2,
        "region_norm_groups": 8,
        "roi_output_size": 4,
        "num_track_boxes": 6,
        "num_selected": 3,
    }
    settings.update(overrides)
    return ArtemisConfig(**settings)
