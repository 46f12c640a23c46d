"""derive_costs.py: the cost table comes from each operation's x-token-cost, under the path
prefix of its API version, and --check notices a stale table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulk_pipeline.sandbox.pipedrive import derive_costs


def write_specs(folder: Path, person_get_cost: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "v2.yaml").write_text(
        "openapi: 3.0.1\npaths:\n"
        "  /persons/{id}:\n"
        f"    get: {{x-token-cost: {person_get_cost}}}\n"
        "    patch: {x-token-cost: 5}\n"
        "    parameters: []\n"
        "  /persons/search:\n"
        "    get: {operationId: searchPersons}\n",
        encoding="utf-8",
    )
    (folder / "v1.yaml").write_text(
        "openapi: 3.0.1\npaths:\n  /notes:\n    post: {x-token-cost: 10}\n", encoding="utf-8"
    )
    return folder


def test_costs_by_method_and_prefixed_template(tmp_path: Path) -> None:
    specs = write_specs(tmp_path / "specs", person_get_cost=1)
    assert derive_costs.costs(specs) == {
        ("GET", "/api/v2/persons/{id}"): 1,
        ("PATCH", "/api/v2/persons/{id}"): 5,
        ("POST", "/api/v1/notes"): 10,
    }
    module: dict[str, object] = {}
    exec(derive_costs.render(derive_costs.costs(specs)), module)
    assert module["TOKEN_COSTS"] == derive_costs.costs(specs)


def test_check_notices_a_stale_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(derive_costs, "COSTS_MODULE", tmp_path / "costs.py")
    specs = write_specs(tmp_path / "specs", person_get_cost=1)
    assert derive_costs.main(["--specs", str(specs)]) == 0
    assert derive_costs.main(["--specs", str(specs), "--check"]) == 0
    write_specs(specs, person_get_cost=2)
    assert derive_costs.main(["--specs", str(specs), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        derive_costs.main(["--specs", str(tmp_path / "nowhere")])
