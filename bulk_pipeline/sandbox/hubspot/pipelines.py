"""Deal pipelines and their stages: ``GET /crm/v3/pipelines/deals/...``, and the check of a deal's
``pipeline`` and ``dealstage`` on every write.

A fresh HubSpot account has one deal pipeline, ``default`` ("Sales Pipeline"), with seven stages.
The sandbox adds the pipelines its configuration names (``deal_pipelines``), so that tests can
use several. Pipelines are configuration here, not records: every client of a sandbox process
sees the same ones, and the API's pipeline writes are not served.

HubSpot treats ``pipeline`` and ``dealstage`` as enumerations: a pipeline id that does not exist,
or a stage id that is not a stage of the deal's pipeline (``default`` when the deal names none),
is refused with the ``INVALID_OPTION`` entry every enumeration gets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bulk_pipeline.sandbox.dialect import Answer
from bulk_pipeline.sandbox.hubspot.errors import hubspot_error
from bulk_pipeline.sandbox.hubspot.objects import DEALS, Option, invalid_option, object_type

DEFAULT_PIPELINE_ID = "default"
ACCOUNT_CREATED = "1970-01-01T00:00:00Z"
"""HubSpot's default pipelines answer ``createdAt`` 0; the sandbox's configured ones do too."""
_PREFIX = "/crm/v3/pipelines/"


@dataclass(frozen=True)
class Stage:
    id: str
    label: str
    probability: float
    """How likely a deal in this stage is to close, 0.0 to 1.0 (``metadata.probability``)."""
    closed: bool = False
    """Whether deals in this stage are closed, won or lost (``metadata.isClosed``)."""

    def as_json(self, order: int) -> dict[str, Any]:
        """A ``PipelineStage``; HubSpot's metadata values are strings."""
        return {
            "id": self.id,
            "label": self.label,
            "displayOrder": order,
            "metadata": {
                "isClosed": "true" if self.closed else "false",
                "probability": str(self.probability),
            },
            "createdAt": ACCOUNT_CREATED,
            "updatedAt": ACCOUNT_CREATED,
            "archived": False,
            "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
        }


@dataclass(frozen=True)
class Pipeline:
    id: str
    label: str
    stages: tuple[Stage, ...]

    def as_json(self, order: int) -> dict[str, Any]:
        """A ``Pipeline``, its stages in display order."""
        return {
            "id": self.id,
            "label": self.label,
            "displayOrder": order,
            "stages": self.stages_json(),
            "createdAt": ACCOUNT_CREATED,
            "updatedAt": ACCOUNT_CREATED,
            "archived": False,
        }

    def stages_json(self) -> list[dict[str, Any]]:
        return [stage.as_json(order) for order, stage in enumerate(self.stages)]

    def as_setting(self) -> dict[str, Any]:
        """The configuration's spelling of the pipeline, which ``parse_pipelines`` reads."""
        return {
            "id": self.id,
            "label": self.label,
            "stages": [
                {"id": s.id, "label": s.label, "probability": s.probability, "closed": s.closed}
                for s in self.stages
            ],
        }


DEFAULT_DEAL_PIPELINE = Pipeline(
    DEFAULT_PIPELINE_ID,
    "Sales Pipeline",
    (
        Stage("appointmentscheduled", "Appointment Scheduled", 0.2),
        Stage("qualifiedtobuy", "Qualified To Buy", 0.4),
        Stage("presentationscheduled", "Presentation Scheduled", 0.6),
        Stage("decisionmakerboughtin", "Decision Maker Bought-In", 0.8),
        Stage("contractsent", "Contract Sent", 0.9),
        Stage("closedwon", "Closed Won", 1.0, closed=True),
        Stage("closedlost", "Closed Lost", 0.0, closed=True),
    ),
)
"""The deal pipeline of every HubSpot account, as ``GET /crm/v3/pipelines/deals`` shows it."""


# Configuration ------------------------------------------------------------------------------


def parse_pipelines(name: str, value: Any) -> tuple[Pipeline, ...]:
    """Extra deal pipelines from JSON: ``[{"id", "label", "stages": [{"id", "label",
    "probability", "closed"}]}]``. Raises ``ValueError`` for people on anything HubSpot would
    not hold: a reused pipeline or stage id (stage ids are unique across deal pipelines), an
    empty pipeline, a probability outside 0 to 1."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of pipelines")
    pipelines = tuple(_pipeline(name, item) for item in value)
    seen_pipelines = {DEFAULT_PIPELINE_ID}
    seen_stages = {stage.id for stage in DEFAULT_DEAL_PIPELINE.stages}
    for pipeline in pipelines:
        if pipeline.id in seen_pipelines:
            raise ValueError(f"{name}: pipeline id {pipeline.id!r} is taken")
        seen_pipelines.add(pipeline.id)
        for stage in pipeline.stages:
            if stage.id in seen_stages:
                raise ValueError(f"{name}: stage id {stage.id!r} is taken")
            seen_stages.add(stage.id)
    return pipelines


def _pipeline(name: str, raw: Any) -> Pipeline:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{name}: each pipeline must be an object with id, label and stages")
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"{name}: pipeline {raw.get('id')!r} needs at least one stage")
    return Pipeline(
        _text(name, raw, "id"), _text(name, raw, "label"), tuple(_stage(name, s) for s in stages)
    )


def _stage(name: str, raw: Any) -> Stage:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{name}: each stage must be an object with id, label and probability")
    probability = raw.get("probability")
    if isinstance(probability, bool) or not isinstance(probability, int | float):
        raise ValueError(f"{name}: stage {raw.get('id')!r} needs a probability from 0 to 1")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"{name}: stage {raw.get('id')!r} has probability {probability}")
    closed = raw.get("closed", False)
    if not isinstance(closed, bool):
        raise ValueError(f"{name}: stage {raw.get('id')!r}: closed must be true or false")
    return Stage(_text(name, raw, "id"), _text(name, raw, "label"), float(probability), closed)


def _text(name: str, raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: every pipeline and stage needs a non-empty {key}")
    return value


# Deal writes --------------------------------------------------------------------------------


def deal_stage_issues(
    pipelines: Sequence[Pipeline],
    patch: Mapping[str, str | None],
    current: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Problems with the ``pipeline`` and ``dealstage`` a deal would have after ``patch``
    (``current`` is what the deal holds now; ``None`` for a create). A deal in no pipeline is in
    the default one."""
    if "pipeline" not in patch and "dealstage" not in patch:
        return []
    held = current or {}
    by_id = {pipeline.id: pipeline for pipeline in pipelines}
    pipeline_id = patch["pipeline"] if "pipeline" in patch else held.get("pipeline")
    if pipeline_id is not None and pipeline_id not in by_id:
        options = tuple(Option(p.id, p.label) for p in pipelines)
        return [invalid_option("pipeline", pipeline_id, options)]
    pipeline = by_id[pipeline_id or DEFAULT_PIPELINE_ID]
    stage_id = patch["dealstage"] if "dealstage" in patch else held.get("dealstage")
    if stage_id is not None and stage_id not in {stage.id for stage in pipeline.stages}:
        options = tuple(Option(stage.id, stage.label) for stage in pipeline.stages)
        return [invalid_option("dealstage", stage_id, options)]
    return []


def in_default_pipeline(patch: dict[str, str | None]) -> dict[str, str | None]:
    """A new deal given a stage but no pipeline is in the default pipeline, and says so."""
    if patch.get("dealstage") is not None and patch.get("pipeline") is None:
        return {**patch, "pipeline": DEFAULT_PIPELINE_ID}
    return patch


# The pipelines API --------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineRoute:
    name: str
    """``pipelines/list``, ``pipelines/get``, ``pipelines/stages`` or ``pipelines/stage``."""
    pipeline_id: str | None = None
    stage_id: str | None = None
    is_write = False
    is_search = False


def parse_pipeline_route(method: str, path: str) -> PipelineRoute | None:
    """The read a method and path name; deals are the only object type with pipelines here."""
    if method != "GET" or not path.startswith(_PREFIX):
        return None
    type_name, *rest = path[len(_PREFIX) :].rstrip("/").split("/")
    if object_type(type_name) is not DEALS:
        return None
    match rest:
        case []:
            return PipelineRoute("pipelines/list")
        case [pipeline_id]:
            return PipelineRoute("pipelines/get", pipeline_id)
        case [pipeline_id, "stages"]:
            return PipelineRoute("pipelines/stages", pipeline_id)
        case [pipeline_id, "stages", stage_id]:
            return PipelineRoute("pipelines/stage", pipeline_id, stage_id)
    return None


def answer(pipelines: Sequence[Pipeline], route: PipelineRoute) -> Answer:
    """Schemas ``CollectionResponsePipelineNoPaging``, ``Pipeline``,
    ``CollectionResponsePipelineStageNoPaging`` and ``PipelineStage``."""
    if route.pipeline_id is None:
        return 200, {"results": [p.as_json(order) for order, p in enumerate(pipelines)]}
    order, pipeline = _find(pipelines, route.pipeline_id)
    if route.name == "pipelines/get":
        return 200, pipeline.as_json(order)
    if route.stage_id is None:
        return 200, {"results": pipeline.stages_json()}
    for stage_order, stage in enumerate(pipeline.stages):
        if stage.id == route.stage_id:
            return 200, stage.as_json(stage_order)
    raise hubspot_error(
        404, "OBJECT_NOT_FOUND", f"Stage {route.stage_id} of pipeline {pipeline.id} was not found."
    )


def _find(pipelines: Sequence[Pipeline], pipeline_id: str) -> tuple[int, Pipeline]:
    for order, pipeline in enumerate(pipelines):
        if pipeline.id == pipeline_id:
            return order, pipeline
    raise hubspot_error(404, "OBJECT_NOT_FOUND", f"Pipeline {pipeline_id} was not found.")
