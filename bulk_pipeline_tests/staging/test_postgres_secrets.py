"""The database URL is a secret: its password never shows in a repr, an error or a resource."""

from __future__ import annotations

import pytest

from bulk_pipeline.defs.resources import StagingResource
from bulk_pipeline.redaction import redact
from bulk_pipeline.staging import open_store
from bulk_pipeline.staging.postgres_store import StagingDatabaseError, describe_url

PASSWORD = "n0t-for-logs-4711"
URL = f"postgresql://bulk:{PASSWORD}@127.0.0.1:1/bulk_pipeline"


def test_a_store_and_its_resource_never_show_the_password() -> None:
    store = open_store(database_url=URL)

    assert PASSWORD not in repr(store)
    assert "127.0.0.1:1/bulk_pipeline" in repr(store)
    assert PASSWORD not in repr(StagingResource(database_url=URL))
    assert PASSWORD not in redact(f"psycopg said: connection to {URL} failed")


def test_a_database_that_refuses_says_where_and_what_to_check_without_the_password() -> None:
    store = open_store(database_url=URL)

    with pytest.raises(StagingDatabaseError) as refused:
        store.status("any-import")

    message = str(refused.value)
    assert PASSWORD not in message
    assert "127.0.0.1:1" in message and "BULK_PIPELINE_DATABASE_URL" in message
    assert refused.value.__cause__ is None


def test_a_sqlalchemy_style_url_is_read_as_the_same_database() -> None:
    described = describe_url("postgresql+psycopg2://bulk:x-secret-1@db:5433/bulk")

    assert described == "postgresql://bulk@db:5433/bulk"
