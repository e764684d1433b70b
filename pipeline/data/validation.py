"""Great Expectations adapter: validates the manifest table and writes Data Docs.

GX validates tables, so images are validated through their per-image metadata (the manifest).
Cross-row rules (duplicates across splits, patients across splits, class share per split) become
derived columns first, so each rule is one plain expectation whose failing rows name files.
This is the only module that imports great_expectations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.data.datadocs import make_offline
from pipeline.data.ingest import LABELS, SPLITS
from pipeline.settings import ValidationConfig

REQUIRED_COLUMNS = (
    "path",
    "key",
    "label",
    "source_split",
    "split",
    "patient_id",
    "sha256",
    "bytes",
)
# Set only for files that were read (and stored).
READ_ONLY_COLUMNS = ("key", "sha256")
USABLE = "quarantined == False"
MAX_EXAMPLES = 5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckOutcome:
    """One expectation's result in our own terms, so callers never touch GX types."""

    description: str
    severity: str
    success: bool
    failing_rows: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ValidationReport:
    checks: list[CheckOutcome]
    docs_path: Path | None

    @property
    def failures(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.success and c.severity == "critical"]

    @property
    def warnings(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.success and c.severity != "critical"]

    @property
    def success(self) -> bool:
        return not self.failures


def build_check_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest plus derived columns that turn cross-row rules into per-row values."""
    table = manifest.copy()
    usable = ~table["quarantined"]
    table["sha256_split_count"] = (
        table[usable].groupby("sha256")["split"].transform("nunique").astype("Int64")
    )
    carved = table["source_split"] == "train"
    table["patient_carved_split_count"] = (
        table[carved].groupby("patient_id")["split"].transform("nunique").astype("Int64")
    )
    table["patient_official_split_count"] = table.groupby("patient_id")["source_split"].transform(
        "nunique"
    )
    share = table[usable].groupby("split")["label"].apply(lambda s: (s == "PNEUMONIA").mean())
    table["split_pneumonia_share"] = table["split"].map(share).astype("float64")
    return table


def build_expectations(cfg: ValidationConfig) -> list:
    """The suite: critical rules stop the pipeline, warnings are reported only."""
    import great_expectations.expectations as gxe

    one = {"min_value": 1, "max_value": 1}
    side = {"min_value": cfg.min_side, "max_value": cfg.max_side}
    bounds = f"[{cfg.min_side}, {cfg.max_side}]"
    usable = {"row_condition": USABLE, "condition_parser": "pandas"}
    critical = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(REQUIRED_COLUMNS), exact_match=False, description="required columns"
        ),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=cfg.min_rows, description=f"at least {cfg.min_rows} rows"
        ),
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=c, description=f"{c} is never empty")
            for c in REQUIRED_COLUMNS
            if c not in READ_ONLY_COLUMNS
        ),
        *(
            # A link or an unreadable file is recorded with its reason, but has no bytes.
            gxe.ExpectColumnValuesToNotBeNull(
                column=c, description=f"{c} is never empty for a usable file", **usable
            )
            for c in READ_ONLY_COLUMNS
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="label", value_set=list(LABELS), description=f"label in {LABELS}"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="source_split", value_set=list(SPLITS), description=f"source_split in {SPLITS}"
        ),
        # `site`: labelled films of the new kind kept to judge models (pipeline.data.split).
        gxe.ExpectColumnValuesToBeInSet(
            column="split",
            value_set=[*SPLITS, "site"],
            description=f"split in {(*SPLITS, 'site')}",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="sha256_split_count", description="no identical image across splits", **one
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="patient_carved_split_count",
            description="no patient across the carved train/val splits",
            **one,
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="decodable", value_set=[True], description="decodable or quarantined", **usable
        ),
        *(
            gxe.ExpectColumnValuesToBeBetween(
                column=c, description=f"{c} within {bounds} px", **side, **usable
            )
            for c in ("width", "height")
        ),
    ]
    warning = {"severity": "warning"}
    warnings = [
        # The official train split itself holds 26 byte-identical files, each pair from one
        # patient; grouping by patient keeps them in one split, so they are reported only.
        gxe.ExpectColumnValuesToBeUnique(
            column="sha256", description="sha256 unique", **usable, **warning
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="quarantined", value_set=[False], description="no quarantined files", **warning
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="split_pneumonia_share",
            min_value=cfg.min_pneumonia_share,
            max_value=cfg.max_pneumonia_share,
            description="PNEUMONIA share per split within bounds",
            **warning,
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="patient_official_split_count",
            description="patient ids shared across official splits (ids are numbered per split)",
            **one,
            **warning,
        ),
    ]
    return critical + warnings


def validate_manifest(
    manifest: pd.DataFrame, cfg: ValidationConfig, docs_dir: Path | None = None
) -> ValidationReport:
    """Run the suite on `manifest`; writes Data Docs to `docs_dir` when given."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        context.add_data_docs_site(site_name="pneumo", site_config=_docs_site(docs_dir))
    batch = (
        context.data_sources.add_pandas("manifest")
        .add_dataframe_asset("manifest")
        .add_batch_definition_whole_dataframe("all rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="manifest"))
    for expectation in build_expectations(cfg):
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="manifest", data=batch, suite=suite)
    )
    actions = [gx.checkpoint.UpdateDataDocsAction(name="docs")] if docs_dir else []
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="manifest",
            validation_definitions=[definition],
            actions=actions,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": ["path"],
            },
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": build_check_table(manifest)})
    checks = [_outcome(r) for run in result.run_results.values() for r in run.results]
    docs_path = None
    if docs_dir is not None:
        docs_path = docs_dir / "index.html"
        if remote := make_offline(docs_dir):
            log.warning("Data Docs still load from the internet: %s", "; ".join(remote))
    return ValidationReport(checks=checks, docs_path=docs_path)


def _docs_site(docs_dir: Path) -> dict:
    return {
        "class_name": "SiteBuilder",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir.resolve()),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }


def _outcome(result) -> CheckOutcome:
    config = result.expectation_config
    details = result.result or {}
    column = config.kwargs.get("column")
    examples = []
    for row in (details.get("unexpected_index_list") or [])[:MAX_EXAMPLES]:
        value = row.get(column) if column else None
        examples.append(f"{row.get('path')} ({column}={value})" if column else str(row))
    if not examples and not result.success:
        examples.append(f"observed {details.get('observed_value')}")
    if result.exception_info and result.exception_info.get("raised_exception"):
        examples.append(f"error: {result.exception_info.get('exception_message')}")
    return CheckOutcome(
        description=config.description or config.type,
        severity=str(getattr(config.severity, "value", config.severity)),
        success=bool(result.success),
        failing_rows=int(details.get("unexpected_count") or 0),
        examples=examples,
    )
