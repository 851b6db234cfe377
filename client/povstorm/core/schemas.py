"""Marshmallow schemas at the edges: HTTP bodies, Pub/Sub payloads, GCS events.

Everything from the wire passes through ``load_*`` here and comes out as a
frozen dataclass from ``povstorm.core.spec`` / ``povstorm.core.model``, or as a
``SpecError`` whose message is one line naming the field.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
    validates_schema,
)

from povstorm.core.chunks import PROFILE_SLICES
from povstorm.core.errors import PoisonMessage, SpecError
from povstorm.core.model import FailureReport, FrameEvent, JobEvent, JobState, WorkMessage
from povstorm.core.naming import JOB_ID_RE, SHA256_RE, check_relpath
from povstorm.core.spec import (
    CACHE_MODES,
    CODECS,
    CRF,
    DEFAULT_CACHE,
    DEFAULT_CODEC,
    DEFAULT_FORMAT,
    ESTIMATE_SOURCES,
    FORMATS,
    FPS,
    FRAMES_PER_UNIT,
    MAX_ATTEMPTS,
    MAX_FRAME_SECONDS,
    TIMEOUT_SECONDS,
    Bounded,
    FrameEstimate,
    FrameRange,
    JobSpec,
    OutputSpec,
    PovraySpec,
    UnitSpec,
)
from povstorm.core.tiles import Band, Tiles

MAX_UNITS = 100_000
MAX_INPUTS = 5_000
MAX_ARGS = 200
MAX_ARG_LEN = 4_096
MAX_INLINE_BYTES_PER_UNIT = 256 * 1024
MAX_INLINE_BYTES_PER_JOB = 8 * 1024 * 1024
MAX_FRAME_NUMBER = 999_999_999
MAX_URL_LEN = 2_000
MAX_IMAGE_ROWS = 65_536
MAX_TILES = 1_000

# Where a job's end is announced (JobSpec.notify): a URL the farm POSTs to.
_NOTIFY_URL = validate.URL(
    relative=False,
    schemes={"http", "https"},
    require_tld=False,  # a receiver on localhost or an IP address is fine
    error="not an http or https URL",
)


def _bounded(option: Bounded) -> fields.Integer:
    return fields.Integer(
        load_default=option.default, validate=validate.Range(option.low, option.high)
    )


def _check_paths(mapping: dict[str, Any], what: str) -> None:
    for path in mapping:
        try:
            check_relpath(path, what)
        except SpecError as exc:
            raise ValidationError(exc.message) from None


class _Strict(Schema):
    class Meta:
        unknown = RAISE


_Args = fields.List(
    fields.String(validate=validate.Length(max=MAX_ARG_LEN)),
    validate=validate.Length(max=MAX_ARGS),
    load_default=list,
)
_Inputs = fields.Dict(
    keys=fields.String(),
    values=fields.String(validate=validate.Regexp(SHA256_RE, error="not a sha256 digest")),
    load_default=dict,
)


class FrameRangeSchema(_Strict):
    first = fields.Integer(
        required=True, validate=validate.Range(-MAX_FRAME_NUMBER, MAX_FRAME_NUMBER)
    )
    last = fields.Integer(
        required=True, validate=validate.Range(-MAX_FRAME_NUMBER, MAX_FRAME_NUMBER)
    )
    step = fields.Integer(load_default=1, validate=validate.Range(1, MAX_FRAME_NUMBER))

    @validates_schema
    def _order(self, data: dict, **_: Any) -> None:
        if data["last"] < data["first"]:
            raise ValidationError(
                f"frame range {data['first']}..{data['last']} is empty or reversed", "last"
            )
        if (data["last"] - data["first"]) // data.get("step", 1) + 1 > MAX_UNITS:
            raise ValidationError(f"more than {MAX_UNITS} frames", "last")

    @post_load
    def _make(self, data: dict, **_: Any) -> FrameRange:
        return FrameRange(**data)


class TilesSchema(_Strict):
    """A tiled still's bands, as their edges: band ``n`` is rows ``edges[n]``
    to ``edges[n + 1] - 1`` (0-based), from row 0 to the image's last, in
    order. (Edges, not pairs: Firestore stores no array in an array.)"""

    edges = fields.List(
        fields.Integer(validate=validate.Range(0, MAX_IMAGE_ROWS)),
        required=True,
        validate=validate.Length(min=2, max=MAX_TILES + 1),
    )

    @validates("edges")
    def _in_order(self, value: list[int], **_: Any) -> None:
        if value[0] != 0 or any(a >= b for a, b in itertools.pairwise(value)):
            raise ValidationError("the band edges must rise from row 0")

    @post_load
    def _make(self, data: dict, **_: Any) -> Tiles:
        edges = data["edges"]
        bands = tuple(Band(i, t, b) for i, (t, b) in enumerate(itertools.pairwise(edges)))
        return Tiles(edges[-1], bands)


class PovraySchema(_Strict):
    args = fields.List(
        fields.String(validate=validate.Length(max=MAX_ARG_LEN)),
        validate=validate.Length(max=MAX_ARGS),
        required=True,
    )
    frames = fields.Nested(FrameRangeSchema, required=True)
    animated = fields.Boolean(load_default=True)
    tiles = fields.Nested(TilesSchema, load_default=None, allow_none=True)
    prepass = fields.Boolean(load_default=False)

    @validates_schema
    def _prepass_whole(self, data: dict, **_: Any) -> None:
        if data.get("tiles") is not None and data.get("prepass"):
            raise ValidationError("a radiosity pre-pass renders the whole image", "prepass")

    @post_load
    def _make(self, data: dict, **_: Any) -> PovraySpec:
        return PovraySpec(
            args=tuple(data["args"]),
            frames=data["frames"],
            animated=data["animated"],
            tiles=data["tiles"],
            prepass=data["prepass"],
        )


class EstimateSchema(_Strict):
    seconds = fields.List(
        fields.Float(validate=validate.Range(min=0, min_inclusive=False, max=MAX_FRAME_SECONDS)),
        validate=validate.Length(1, PROFILE_SLICES),
        required=True,
    )
    source = fields.String(validate=validate.OneOf(ESTIMATE_SOURCES), required=True)

    @post_load
    def _make(self, data: dict, **_: Any) -> FrameEstimate:
        return FrameEstimate(tuple(data["seconds"]), data["source"])


class UnitSchema(_Strict):
    args = _Args
    inputs = _Inputs
    inline = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    label = fields.String(load_default="", validate=validate.Length(max=200))

    @validates("inputs")
    def _inputs(self, value: dict, **_: Any) -> None:
        _check_paths(value, "input name")

    @validates("inline")
    def _inline(self, value: dict, **_: Any) -> None:
        _check_paths(value, "inline file name")
        size = sum(len(v.encode()) for v in value.values())
        if size > MAX_INLINE_BYTES_PER_UNIT:
            raise ValidationError(
                f"inline files total {size} bytes, over the limit of {MAX_INLINE_BYTES_PER_UNIT}; "
                "upload large files as inputs"
            )

    @post_load
    def _make(self, data: dict, **_: Any) -> UnitSpec:
        return UnitSpec(
            args=tuple(data["args"]),
            inputs=data["inputs"],
            inline=data["inline"],
            label=data["label"],
        )


class OutputSchema(_Strict):
    fps = _bounded(FPS)
    codec = fields.String(load_default=DEFAULT_CODEC, validate=validate.OneOf(CODECS))
    crf = _bounded(CRF)
    format = fields.String(load_default=DEFAULT_FORMAT, validate=validate.OneOf(FORMATS))
    video = fields.Boolean(load_default=True)

    @post_load
    def _make(self, data: dict, **_: Any) -> OutputSpec:
        return OutputSpec(**data)


class JobSpecSchema(_Strict):
    job_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(JOB_ID_RE, error="invalid job id"),
    )
    name = fields.String(
        load_default="job",
        validate=[
            validate.Length(1, 100),
            validate.Regexp(r"^[^\x00-\x1f]*$", error="control characters"),
        ],
    )
    inputs = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.Regexp(SHA256_RE, error="not a sha256 digest")),
        load_default=dict,
    )
    inputs_dir = fields.String(load_default="", validate=validate.OneOf(["", "shared"]))
    povray = fields.Nested(PovraySchema, load_default=None, allow_none=True)
    units = fields.List(fields.Nested(UnitSchema), load_default=list)
    output = fields.Nested(OutputSchema, load_default=lambda: OutputSpec())
    max_attempts = _bounded(MAX_ATTEMPTS)
    fail_fast = fields.Boolean(load_default=False)
    timeout_seconds = _bounded(TIMEOUT_SECONDS)
    frames_per_unit = _bounded(FRAMES_PER_UNIT)
    cache = fields.String(load_default=DEFAULT_CACHE, validate=validate.OneOf(CACHE_MODES))
    budget_usd = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, min_inclusive=False, error="a positive amount of USD"),
    )
    frame_digits = fields.Integer(load_default=0, validate=validate.Range(0, 9))
    extra = fields.Dict(keys=fields.String(), load_default=dict)
    notify = fields.String(load_default="")
    estimate = fields.Nested(EstimateSchema, load_default=None, allow_none=True)

    @validates("notify")
    def _notify(self, value: str, **_: Any) -> None:
        if value:
            _check_notify(value)

    @validates("inputs")
    def _inputs(self, value: dict, **_: Any) -> None:
        if len(value) > MAX_INPUTS:
            raise ValidationError(f"{len(value)} inputs, over the limit of {MAX_INPUTS}")
        _check_paths(value, "input name")

    @validates("units")
    def _units(self, value: list, **_: Any) -> None:
        if len(value) > MAX_UNITS:
            raise ValidationError(f"{len(value)} units, over the limit of {MAX_UNITS}")

    @validates_schema
    def _one_form(self, data: dict, **_: Any) -> None:
        has_scene, has_units = data.get("povray") is not None, bool(data.get("units"))
        if has_scene == has_units:
            raise ValidationError("give exactly one of 'povray' (a scene) or 'units'", "units")
        inline = sum(len(v.encode()) for u in data.get("units", []) for v in u.inline.values())
        if inline > MAX_INLINE_BYTES_PER_JOB:
            raise ValidationError(
                f"inline files total {inline} bytes, over the job limit of {MAX_INLINE_BYTES_PER_JOB}",
                "units",
            )

    @post_load
    def _make(self, data: dict, **_: Any) -> JobSpec:
        data["units"] = tuple(data["units"])
        return JobSpec(**data)


def _check_notify(url: str) -> None:
    if len(url) > MAX_URL_LEN:
        raise ValidationError(f"longer than {MAX_URL_LEN} characters")
    _NOTIFY_URL(url)


def check_notify_url(url: str) -> str:
    """``url`` if a job may notify it (http or https, absolute), else a
    SpecError of one line: the client checks it before anything is uploaded."""
    try:
        _check_notify(url)
    except ValidationError as exc:
        raise SpecError(f"--notify {url}: {' '.join(map(str, exc.messages))}") from None
    return url


def _first_message(messages: Any, path: str = "") -> str:
    """Flatten marshmallow's nested messages to 'field.sub: message'."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            sub = key if key != "_schema" else ""
            return _first_message(value, f"{path}.{sub}".strip(".") if sub != "" else path)
    if isinstance(messages, list) and messages:
        return _first_message(messages[0], path)
    text = str(messages)
    if text == "Unknown field.":
        return f"unknown field '{path}'"
    return f"{path}: {text}" if path else text


def load_job_spec(payload: Any) -> JobSpec:
    if not isinstance(payload, dict):
        raise SpecError("job spec must be a JSON object")
    try:
        return JobSpecSchema().load(payload)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise SpecError(f"invalid job spec: {_first_message(messages)}", messages) from None


def dump_job_spec(spec: JobSpec) -> dict[str, Any]:
    """The JSON form of a spec (the inverse of ``load_job_spec``)."""
    out: dict[str, Any] = {
        "name": spec.name,
        "inputs": dict(spec.inputs),
        "inputs_dir": spec.inputs_dir,
        "output": {
            "fps": spec.output.fps,
            "codec": spec.output.codec,
            "crf": spec.output.crf,
            "format": spec.output.format,
            "video": spec.output.video,
        },
        "max_attempts": spec.max_attempts,
        "fail_fast": spec.fail_fast,
        "timeout_seconds": spec.timeout_seconds,
        "frames_per_unit": spec.frames_per_unit,
        "cache": spec.cache,
        "frame_digits": spec.frame_digits,
        "extra": dict(spec.extra),
    }
    if spec.job_id:
        out["job_id"] = spec.job_id
    if spec.budget_usd is not None:  # absent when unset, as notify: the spec hash stays
        out["budget_usd"] = spec.budget_usd
    if spec.notify:  # absent when unset: the spec hash of a job without it is as before
        out["notify"] = spec.notify
    if spec.estimate is not None:  # the same
        out["estimate"] = {"seconds": list(spec.estimate.seconds), "source": spec.estimate.source}
    if spec.povray:
        out["povray"] = {
            "args": list(spec.povray.args),
            "frames": {
                "first": spec.povray.frames.first,
                "last": spec.povray.frames.last,
                "step": spec.povray.frames.step,
            },
            "animated": spec.povray.animated,
        }
        if spec.povray.tiles:  # absent when untiled: the spec hash stays
            tiles = spec.povray.tiles
            out["povray"]["tiles"] = {"edges": [0, *(b.bottom for b in tiles.bands)]}
        if spec.povray.prepass:  # absent when false: the spec hash stays
            out["povray"]["prepass"] = True
    else:
        out["units"] = [
            {
                "args": list(u.args),
                "inputs": dict(u.inputs),
                "inline": dict(u.inline),
                "label": u.label,
            }
            for u in spec.units
        ]
    return out


# --- Pub/Sub payloads --------------------------------------------------------


class WorkMessageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    job_id = fields.String(required=True, validate=validate.Regexp(JOB_ID_RE))
    unit = fields.Integer(required=True, validate=validate.Range(0, MAX_UNITS - 1))
    attempt = fields.Integer(load_default=1, validate=validate.Range(1, 1000))
    count = fields.Integer(load_default=1, validate=validate.Range(1, FRAMES_PER_UNIT.high))

    @validates_schema
    def _inside(self, data: dict, **_: Any) -> None:
        if data.get("unit", 0) + data.get("count", 1) > MAX_UNITS:
            raise ValidationError("the chunk ends past the last unit", "count")

    @post_load
    def _make(self, data: dict, **_: Any) -> WorkMessage:
        return WorkMessage(**data)


class FailureReportSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    job_id = fields.String(required=True, validate=validate.Regexp(JOB_ID_RE))
    unit = fields.Integer(required=True, validate=validate.Range(0, MAX_UNITS - 1))
    attempt = fields.Integer(load_default=1, validate=validate.Range(1, 1000))
    error = fields.String(load_default="unknown error")
    log_tail = fields.String(load_default="")
    worker = fields.String(load_default="")
    final = fields.Boolean(load_default=False)

    @post_load
    def _make(self, data: dict, **_: Any) -> FailureReport:
        data["error"] = data["error"][:4000]
        data["log_tail"] = data["log_tail"][-8000:]
        return FailureReport(**data)


class JobEventSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    job_id = fields.String(required=True, validate=validate.Regexp(JOB_ID_RE))
    state = fields.Enum(JobState, by_value=True, required=True)
    previous = fields.Enum(JobState, by_value=True, load_default=None, allow_none=True)
    at = fields.AwareDateTime(required=True)

    @post_load
    def _make(self, data: dict, **_: Any) -> JobEvent:
        return JobEvent(**data)


def encode_job_event(event: JobEvent) -> bytes:
    return json.dumps(JobEventSchema().dump(event), separators=(",", ":")).encode()


def load_job_event(data: bytes | str) -> JobEvent:
    try:
        return JobEventSchema().load(_decode_json(data))
    except ValidationError as exc:
        raise PoisonMessage(f"malformed job event: {_first_message(exc.messages)}") from None


def encode_message(obj: WorkMessage | FailureReport) -> bytes:
    import dataclasses

    return json.dumps(dataclasses.asdict(obj), separators=(",", ":")).encode()


def _decode_json(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PoisonMessage(f"message is not JSON: {exc}") from None


def load_work_message(data: bytes | str) -> WorkMessage:
    try:
        return WorkMessageSchema().load(_decode_json(data))
    except ValidationError as exc:
        raise PoisonMessage(f"malformed work message: {_first_message(exc.messages)}") from None


def load_failure_report(data: bytes | str) -> FailureReport:
    try:
        return FailureReportSchema().load(_decode_json(data))
    except ValidationError as exc:
        raise PoisonMessage(f"malformed failure report: {_first_message(exc.messages)}") from None


def pubsub_data(cloud_event_data: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """(data, attributes) of a messagePublished CloudEvent's payload."""
    try:
        message = cloud_event_data["message"]
        raw = base64.b64decode(message.get("data", "") or "")
        return raw, dict(message.get("attributes") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise PoisonMessage(f"not a Pub/Sub message: {exc}") from None


def load_frame_event(data: bytes, attributes: dict[str, str]) -> FrameEvent | None:
    """A GCS notification as a FrameEvent; None for events that are not OBJECT_FINALIZE."""
    if attributes.get("eventType", "OBJECT_FINALIZE") != "OBJECT_FINALIZE":
        return None
    body = _decode_json(data) if data else {}
    if not isinstance(body, dict):
        raise PoisonMessage("GCS notification payload is not an object")
    name = body.get("name") or attributes.get("objectId")
    bucket = body.get("bucket") or attributes.get("bucketId")
    generation = body.get("generation") or attributes.get("objectGeneration")
    try:
        gen = int(generation)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PoisonMessage(f"GCS notification without a generation for {name!r}") from None
    if not name or not bucket:
        raise PoisonMessage("GCS notification without bucket or object name")
    md = body.get("metadata") or {}
    try:
        size = int(body.get("size") or 0)
    except (TypeError, ValueError):
        size = 0
    return FrameEvent(bucket=bucket, name=name, generation=gen, metadata=dict(md), size=size)
