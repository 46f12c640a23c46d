"""HubSpot (CRM v3) as a bulk_pipeline target; the embedded sandbox speaks the same dialect."""

from bulk_pipeline.targets.crm import Crm
from bulk_pipeline.targets.http.auth import BearerAuth
from bulk_pipeline.targets.hubspot.dialect import HubSpotDialect, hubspot_budget

HUBSPOT = Crm(
    name="hubspot",
    label="HubSpot",
    token_env="HUBSPOT_ACCESS_TOKEN",
    base_url_env="HUBSPOT_BASE_URL",
    default_base_url="https://api.hubapi.com",
    token_help=(
        "create a HubSpot private app with the crm.objects.*.read/write scopes and export its "
        "access token"
    ),
    auth=BearerAuth,
    budget=lambda _settings, state_file: hubspot_budget(state_file),
    dialect=lambda exchange, _settings: HubSpotDialect(exchange),
)

__all__ = ["HUBSPOT", "HubSpotDialect"]
