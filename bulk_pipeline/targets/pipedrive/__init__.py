"""Pipedrive (API v2, v1 for notes) as a bulk_pipeline target; the sandbox speaks it too."""

from bulk_pipeline.targets.crm import Crm
from bulk_pipeline.targets.http.auth import HeaderTokenAuth
from bulk_pipeline.targets.pipedrive.budget import DAILY_TOKENS_ENV, pipedrive_budget
from bulk_pipeline.targets.pipedrive.dialect import PipedriveDialect

PIPEDRIVE = Crm(
    name="pipedrive",
    label="Pipedrive",
    token_env="PIPEDRIVE_API_TOKEN",
    base_url_env="PIPEDRIVE_BASE_URL",
    default_base_url="https://api.pipedrive.com",
    token_help=(
        "copy your personal API token from Pipedrive (Settings > Personal preferences > API) "
        "and export it"
    ),
    auth=lambda token: HeaderTokenAuth("x-api-token", token),
    budget=pipedrive_budget,
    dialect=lambda exchange, _settings: PipedriveDialect(exchange),
    extra_env=(DAILY_TOKENS_ENV,),
)

__all__ = ["PIPEDRIVE", "PipedriveDialect"]
