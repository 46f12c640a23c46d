"""Attio (REST API v2) as a bulk_pipeline target; the embedded sandbox speaks the same dialect."""

from bulk_pipeline.targets.attio.dialect import AttioDialect, attio_budget
from bulk_pipeline.targets.crm import Crm
from bulk_pipeline.targets.http.auth import BearerAuth

ATTIO = Crm(
    name="attio",
    label="Attio",
    token_env="ATTIO_ACCESS_TOKEN",
    base_url_env="ATTIO_BASE_URL",
    default_base_url="https://api.attio.com",
    token_help=(
        "create an access token in Attio (Workspace settings, Developers) with read-write "
        "record, list entry, note and task permissions, read object and list configuration and "
        "read user management, and export it"
    ),
    auth=BearerAuth,
    budget=lambda _settings, _state_file: attio_budget(),
    dialect=lambda exchange, _settings: AttioDialect(exchange),
)

__all__ = ["ATTIO", "AttioDialect", "attio_budget"]
