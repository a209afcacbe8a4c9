"""Materialization metadata shared by the assets: schemas, counts, markdown."""


import math

import dagster as dg
import polars as pl

_TYPE_NAMES = {
    pl.Utf8: "VARCHAR",
    pl.Float64: "DOUBLE",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Boolean: "BOOLEAN",
    pl.Date: "DATE",
}


def _type_name(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.List):
        return f"{_type_name(dtype.inner)}[]"
    return _TYPE_NAMES.get(dtype, str(dtype).upper())


def table_schema(frame: pl.DataFrame, descriptions: dict[str, str] | None = None) -> dg.TableSchema:
    descriptions = descriptions or {}
    columns = [dg.TableColumn("refresh_quarter", "DATE", description="The refresh quarter (partition key).")]
    columns += [
        dg.TableColumn(name, _type_name(dtype), description=descriptions.get(name))
        for name, dtype in frame.schema.items()
    ]
    return dg.TableSchema(columns=columns)


def table_metadata(table: str, frame: pl.DataFrame, descriptions: dict[str, str] | None = None) -> dict:
    return {
        "dagster/table_name": f"main.{table}",
        "dagster/partition_row_count": frame.height,
        "dagster/column_schema": table_schema(frame, descriptions),
    }


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, list):
        return f"{len(value)} items"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pl.DataFrame, max_rows: int = 20) -> str:
    if frame.height == 0:
        return "_no rows_"
    head = frame.head(max_rows)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in head.iter_rows()]
    if frame.height > max_rows:
        lines.append(f"\n_{frame.height - max_rows} more rows_")
    return "\n".join(lines)


def numeric_metadata(values: dict) -> dict:
    """Ints and floats become plottable metadata; other values become text."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            out[key] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            out[key] = dg.MetadataValue.float(value if math.isfinite(value) else -1.0)
        elif value is not None:
            out[key] = dg.MetadataValue.text(str(value))
    return out
