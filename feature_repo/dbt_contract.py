"""The dbt project as the single source of truth for what Feast reads.

Feast's own dbt import only produces BigQuery/Snowflake-style sources, so the
feature repository reads the dbt model YAML itself: table names (schema from
the model config or dbt_project.yml), column names, contract data types and
descriptions all come from `dbt_project/`. The feature views only choose which
columns they serve; `features_for()` fails at import time, naming the YAML file
and line, when a chosen column is missing from the contract or has a type Feast
cannot serve exactly. Reading the YAML (not target/manifest.json) means `make
apply` works from a clean clone without a dbt run first.

This module defines no Feast objects, so `feast apply` importing it is harmless.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from feast import Field
from feast.types import Bool, FeastType, Float64, Int32, Int64, String

logger = logging.getLogger(__name__)

# Overridable so the drift test can point the definitions at an edited copy.
DBT_PROJECT_ENV = "STREAMFLOW_DBT_PROJECT_DIR"
DEFAULT_DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"

# Contract data types (as written in the YAML, lower-cased, spaces collapsed)
# mapped to the Feast type that returns the stored value unchanged. numeric and
# real are refused on purpose: Feast would serve them as Float32 or lose the
# exact decimal, which is how 29.85 turns into 29.850000381469727.
FEAST_TYPE_BY_DBT_TYPE: dict[str, FeastType] = {
    "text": String,
    "varchar": String,
    "character varying": String,
    "boolean": Bool,
    "bool": Bool,
    "integer": Int32,
    "int": Int32,
    "int4": Int32,
    "bigint": Int64,
    "int8": Int64,
    "double precision": Float64,
    "float8": Float64,
}
TIMESTAMPTZ_TYPES = frozenset({"timestamp with time zone", "timestamptz"})


class DbtContractError(ValueError):
    """The dbt project does not provide what the Feast definitions need."""


@dataclass(frozen=True)
class DbtColumn:
    name: str
    data_type: str
    description: str
    line: int


@dataclass(frozen=True)
class DbtModel:
    name: str
    schema: str
    description: str
    yaml_path: Path
    line: int
    columns: dict[str, DbtColumn] = field(default_factory=dict)

    @property
    def relation(self) -> str:
        """`schema.table` as the offline store queries it."""
        return f"{self.schema}.{self.name}"

    def where(self, column: DbtColumn | None = None) -> str:
        line = column.line if column else self.line
        return f"{self.yaml_path}:{line} (model {self.name})"

    def column(self, name: str, *, context: str) -> DbtColumn:
        try:
            column = self.columns[name]
        except KeyError:
            raise DbtContractError(
                f"{self.where()}: column {name!r} needed by {context} is not in the "
                f"dbt contract; columns are {sorted(self.columns)}"
            ) from None
        if not column.data_type:
            raise DbtContractError(
                f"{self.where(column)}: column {name!r} needed by {context} has no "
                "data_type; Feast maps its type from the dbt contract"
            )
        return column

    def timestamp_column(self, name: str, *, context: str) -> DbtColumn:
        column = self.column(name, context=context)
        if _normalise_type(column.data_type) not in TIMESTAMPTZ_TYPES:
            raise DbtContractError(
                f"{self.where(column)}: {context} uses {name!r} as its event time, "
                f"which must be 'timestamp with time zone', not {column.data_type!r}"
            )
        return column

    def features_for(self, names: list[str], *, context: str) -> list[Field]:
        """Feast fields for `names`, typed and described by the dbt contract."""
        fields = []
        for name in names:
            column = self.column(name, context=context)
            feast_type = FEAST_TYPE_BY_DBT_TYPE.get(_normalise_type(column.data_type))
            if feast_type is None:
                raise DbtContractError(
                    f"{self.where(column)}: column {name!r} has data_type "
                    f"{column.data_type!r}, which {context} cannot serve exactly; "
                    f"use one of {sorted(FEAST_TYPE_BY_DBT_TYPE)}"
                )
            fields.append(
                Field(name=name, dtype=feast_type, description=column.description)
            )
        return fields


def _normalise_type(data_type: str) -> str:
    return " ".join(data_type.lower().split())


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping, for errors."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise DbtContractError(f"{path}: not valid YAML: {exc}") from exc


def dbt_project_dir() -> Path:
    return Path(os.environ.get(DBT_PROJECT_ENV) or DEFAULT_DBT_PROJECT_DIR)


def load_models(project_dir: Path | None = None) -> dict[str, DbtModel]:
    """Every model documented in the project's YAML, by name."""
    project_dir = (project_dir or dbt_project_dir()).resolve()
    project_file = project_dir / "dbt_project.yml"
    if not project_file.is_file():
        raise DbtContractError(
            f"{project_file}: not found; the Feast definitions read table and column "
            f"names from the dbt project (set {DBT_PROJECT_ENV} to use another one)"
        )
    project = _read_yaml(project_file) or {}
    project_name = project.get("name")
    model_paths = project.get("model-paths") or ["models"]
    folder_configs = (project.get("models") or {}).get(project_name) or {}

    models: dict[str, DbtModel] = {}
    for model_path in model_paths:
        root = project_dir / model_path
        sql_dirs = {sql.stem: sql.parent for sql in root.rglob("*.sql")}
        for yaml_path in sorted([*root.rglob("*.yml"), *root.rglob("*.yaml")]):
            document = _read_yaml(yaml_path) or {}
            for entry in document.get("models") or []:
                model = _parse_model(
                    entry, yaml_path, root, sql_dirs, folder_configs, project_file
                )
                models[model.name] = model
    logger.debug("read %d dbt models from %s", len(models), project_dir)
    return models


def _parse_model(
    entry: dict[str, Any],
    yaml_path: Path,
    root: Path,
    sql_dirs: dict[str, Path],
    folder_configs: dict[str, Any],
    project_file: Path,
) -> DbtModel:
    line = entry.get("__line__", 0)
    name = entry.get("name")
    if not name:
        raise DbtContractError(f"{yaml_path}:{line}: a model entry has no name")
    columns = {}
    for column in entry.get("columns") or []:
        column_line = column.get("__line__", line)
        # Only the columns Feast uses must be typed (checked where they are
        # used): staging models document columns without contracts.
        columns[column["name"]] = DbtColumn(
            name=column["name"],
            data_type=str(column.get("data_type") or ""),
            description=" ".join(str(column.get("description") or "").split()),
            line=column_line,
        )
    schema = (entry.get("config") or {}).get("schema")
    if not schema:
        # Walk dbt_project.yml's folder tree down to the model's .sql folder;
        # the deepest `+schema` wins, as in dbt.
        sql_dir = sql_dirs.get(name, yaml_path.parent)
        node = folder_configs
        schema = node.get("+schema")
        for part in sql_dir.relative_to(root).parts:
            node = node.get(part) or {}
            schema = node.get("+schema", schema)
    return DbtModel(
        name=name,
        schema=schema or "",
        description=" ".join(str(entry.get("description") or "").split()),
        yaml_path=yaml_path,
        line=line,
        columns=columns,
    )


@functools.cache
def _models_in(project_dir: Path) -> dict[str, DbtModel]:
    # Four definition modules ask for models at import; parse the YAML once.
    return load_models(project_dir)


def model(name: str, project_dir: Path | None = None) -> DbtModel:
    """One model, with a schema; raises DbtContractError naming what is missing."""
    models = _models_in((project_dir or dbt_project_dir()).resolve())
    try:
        found = models[name]
    except KeyError:
        raise DbtContractError(
            f"{(project_dir or dbt_project_dir())}: no YAML documents the dbt model "
            f"{name!r} that the Feast definitions read; models are {sorted(models)}"
        ) from None
    if not found.schema:
        raise DbtContractError(
            f"{found.where()}: no schema configured (config.schema or +schema in "
            "dbt_project.yml), so Feast cannot tell which table to read"
        )
    return found


def drift(views: list[Any], project_dir: Path | None = None) -> list[str]:
    """Every way the given feature views disagree with a dbt project.

    Checks what the views were built from (model named in the view's
    `dbt_model` tag): the source table, each field's name, Feast type and
    description. An empty list means no drift. Used by the drift test against
    edited copies of the dbt project, and usable against registered views.
    """
    project_dir = (project_dir or dbt_project_dir()).resolve()
    models = load_models(project_dir)
    problems = []
    for view in views:
        model_name = view.tags.get("dbt_model", "")
        dbt_model = models.get(model_name)
        if dbt_model is None:
            problems.append(f"view {view.name}: dbt model {model_name!r} not found")
            continue
        table = view.batch_source.get_table_query_string()
        if table != dbt_model.relation:
            problems.append(
                f"view {view.name}: reads {table}, dbt builds {dbt_model.relation}"
            )
        for feast_field in [*view.entity_columns, *view.features]:
            column = dbt_model.columns.get(feast_field.name)
            if column is None:
                problems.append(
                    f"view {view.name}: {feast_field.name} is not a column of "
                    f"{dbt_model.where()}"
                )
                continue
            expected = FEAST_TYPE_BY_DBT_TYPE.get(_normalise_type(column.data_type))
            if expected != feast_field.dtype:
                problems.append(
                    f"view {view.name}: {feast_field.name} is {feast_field.dtype} in "
                    f"Feast but {column.data_type!r} at {dbt_model.where(column)}"
                )
            if column.description != feast_field.description:
                problems.append(
                    f"view {view.name}: description of {feast_field.name} differs "
                    f"from {dbt_model.where(column)}"
                )
    return problems
