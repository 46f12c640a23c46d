"""Deal pipelines and stages: people write labels ("Closed Won"), HubSpot keeps ids.

The account's pipelines are read once per target (``GET /crm/v3/pipelines/deals``). A stage is
looked for in the deal's pipeline when one is given, else in the default pipeline, else in the
only pipeline that has it; ids are accepted as well as labels. Values read back are labels again,
so a deal imported twice compares equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bulk_pipeline.entities import normalize_key

DEFAULT_PIPELINE_ID = "default"


@dataclass(frozen=True)
class Pipeline:
    id: str
    label: str
    stages: dict[str, str]
    """Stage id -> label, in display order."""

    def stage_id(self, value: str) -> str | None:
        wanted = normalize_key(value)
        return next(
            (
                stage_id
                for stage_id, label in self.stages.items()
                if wanted in (normalize_key(label), normalize_key(stage_id))
            ),
            None,
        )


@dataclass(frozen=True)
class Placement:
    """Where a deal goes: the ids to send."""

    pipeline_id: str
    stage_id: str | None


@dataclass
class DealPipelines:
    pipelines: list[Pipeline] = field(default_factory=list)

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> DealPipelines:
        rows = body.get("results") if isinstance(body.get("results"), list) else []
        pipelines = []
        for row in sorted(
            (r for r in rows or [] if isinstance(r, dict)),
            key=lambda r: (r.get("displayOrder") or 0, str(r.get("label"))),
        ):
            stages = sorted(
                (s for s in row.get("stages") or [] if isinstance(s, dict)),
                key=lambda s: (s.get("displayOrder") or 0, str(s.get("label"))),
            )
            pipelines.append(
                Pipeline(
                    id=str(row.get("id")),
                    label=str(row.get("label") or row.get("id")),
                    stages={str(s.get("id")): str(s.get("label") or s.get("id")) for s in stages},
                )
            )
        return cls(pipelines)

    @property
    def default(self) -> Pipeline | None:
        return next(
            (p for p in self.pipelines if p.id == DEFAULT_PIPELINE_ID),
            self.pipelines[0] if self.pipelines else None,
        )

    def pipeline(self, value: str) -> Pipeline | None:
        wanted = normalize_key(value)
        return next(
            (p for p in self.pipelines if wanted in (normalize_key(p.label), normalize_key(p.id))),
            None,
        )

    def place(
        self, stage: str | None, pipeline: str | None, current: str | None = None
    ) -> Placement | str | None:
        """The ids for a deal's stage and pipeline labels (None when it gives neither); or why
        there are none (the message lists what the account has). ``current``: the pipeline id
        the deal is in now, for an update. A deal put into another pipeline without a stage
        starts in that pipeline's first stage, as HubSpot's board does: a deal's stage must
        belong to its pipeline."""
        if not stage and not pipeline:
            return None
        if pipeline:
            chosen = self.pipeline(pipeline)
            if chosen is None:
                names = ", ".join(f"'{p.label}'" for p in self.pipelines) or "none"
                return f"pipeline '{pipeline}' is not a deal pipeline of this account ({names})"
            candidates = [chosen]
        else:
            default = self.default
            candidates = [default] if default is not None else []
            candidates += [p for p in self.pipelines if p is not default]
        if not stage:
            target = candidates[0]
            first = next(iter(target.stages), None)
            return Placement(target.id, None if target.id == current else first)
        for position, candidate in enumerate(candidates):
            stage_id = candidate.stage_id(stage)
            if stage_id is not None and (position == 0 or pipeline is None):
                return Placement(candidate.id, stage_id)
        if not candidates:
            return f"stage '{stage}' cannot be placed: the account has no deal pipelines"
        listed = candidates if pipeline is None else candidates[:1]
        if len(listed) == 1:
            return (
                f"stage '{stage}' is not a stage of pipeline '{listed[0].label}'; "
                f"its stages are {_stage_labels(listed[0])}"
            )
        valid = "; ".join(f"pipeline '{p.label}': {_stage_labels(p)}" for p in listed)
        return f"stage '{stage}' is not a stage of any deal pipeline; the stages are {valid}"

    def labels(
        self, pipeline_id: str | None, stage_id: str | None
    ) -> tuple[str | None, str | None]:
        """The labels of ids read from HubSpot (ids it does not list stay as they are)."""
        found = next((p for p in self.pipelines if p.id == pipeline_id), None)
        pipeline_label = found.label if found else pipeline_id
        stage_label = found.stages.get(stage_id or "", stage_id) if found else stage_id
        return pipeline_label, stage_label


def _stage_labels(pipeline: Pipeline) -> str:
    return ", ".join(f"'{label}'" for label in pipeline.stages.values()) or "none"
