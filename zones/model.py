"""The declarative zone model: ``zones.yaml`` parsed into strict, frozen pydantic models.

Every model forbids unknown keys and documents each field (``Field(description=...)``) so reference docs can be
generated from the code. Loading, line numbers and environment overrides live in :mod:`zones.config`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

from zones.durations import Duration

IDENT_RX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _ident(value: Any) -> str:
    if not isinstance(value, str) or not IDENT_RX.match(value):
        raise ValueError(
            f"{value!r} is not a safe SQL identifier: use letters, digits and _ only, starting with a letter or _, "
            "at most 63 characters"
        )
    return value


def _duration(value: Any) -> Duration:
    return value if isinstance(value, Duration) else Duration.parse(str(value))


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


Ident = Annotated[str, BeforeValidator(_ident)]
OptionText = Annotated[str, BeforeValidator(_option_text)]
Dur = Annotated[Duration, BeforeValidator(_duration), PlainSerializer(str, return_type=str)]

PersonalDataClass = Literal["direct", "quasi", "special", "none"]
WarmPolicy = Literal["keep", "pseudonymise", "generalise", "drop"]
Generalisation = Literal["year", "year_month", "decade", "icd10_chapter", "county"]
LOSSY: frozenset[str] = frozenset({"pseudonymise", "generalise", "drop"})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Severity = Literal["block", "warn", "quarantine"]
ColumnType = Literal["string", "integer", "decimal", "date", "timestamp", "boolean"]
ValueFormat = Literal["personnummer", "samordningsnummer", "identitetsnummer", "icd10_se"]
Scalar = str | int | float | bool


class Column(Strict):
    personal_data: PersonalDataClass = Field(
        alias="class",
        description="Personal-data class: direct identifier, quasi-identifier, special category (GDPR art. 9) or none.",
    )
    warm: WarmPolicy = Field("keep", description="What the warm zone receives: keep, pseudonymise (keyed "
                             "HMAC-SHA-256), generalise (see `generalise`) or drop.")
    generalise: Generalisation | None = Field(
        None, description="How a generalised column is coarsened: year, year_month, decade (of a date or year), "
        "icd10_chapter (ICD-10 code -> chapter), county (kommunkod -> län, first two digits).")
    sealed: bool | None = Field(
        None, description="Required for lossy warm policies: true keeps the original as an AEAD ciphertext in warm "
        "(readable only with DATAZONES_SEAL_KEY) so the archive can restore the authentic record; false loses it.")
    basis: str | None = Field(
        None, description="For a lossy, unsealed column: the decision (e.g. RA-MS 2024:5) that allows losing the "
        "original. Without it the dataset cannot be archived (the loss would be disposal, gallring).")
    description: str | None = Field(None, description="What the column means, for the catalogue and the archive.")
    # Quality contract: each becomes a Great Expectations expectation in the dataset's promote suite.
    type: ColumnType | None = Field(None, description="Declared type; the gate fails the batch (block) when the "
                                    "hot column no longer has it, e.g. after a hot schema change.")
    nullable: bool = Field(True, description="false: expect no nulls (keys, watermark and business date always).")
    unique: bool = Field(False, description="Expect unique values (the primary key always).")
    values: list[Scalar] | None = Field(None, description="Allowed values (expect_column_values_to_be_in_set).")
    min_: Scalar | None = Field(None, alias="min", description="Smallest allowed value (number or ISO date).")
    max_: Scalar | None = Field(None, alias="max", description="Largest allowed value (number or ISO date); "
                                "`today` for dates not in the future.")
    regex: str | None = Field(None, description="Values must match this regular expression (search semantics).")
    format: ValueFormat | None = Field(None, description="Domain format checked by a datazones expectation: "
                                       "personnummer, samordningsnummer, identitetsnummer (either), icd10_se. "
                                       "Nulls fail a format check.")
    multiple_of: int | None = Field(None, gt=0, description="Values must be whole multiples of this, e.g. 100.")
    severity: Severity | None = Field(None, description="Severity of this column's checks (default: the "
                                      "dataset's quality.severity).")

    @model_validator(mode="after")
    def _coherent(self) -> Column:
        if self.warm == "generalise" and self.generalise is None:
            raise ValueError("warm: generalise needs `generalise:` (year, year_month, decade, icd10_chapter, county)")
        if self.warm != "generalise" and self.generalise is not None:
            raise ValueError(f"`generalise` is only meaningful with warm: generalise (warm is {self.warm})")
        if self.warm in LOSSY and self.sealed is None:
            raise ValueError(
                f"warm: {self.warm} loses the original; say `sealed: true` (keep an encrypted original for the "
                "archive) or `sealed: false` with a `basis:` citing the decision that allows the loss")
        if self.personal_data == "direct" and self.warm in ("keep", "generalise"):
            raise ValueError("a direct identifier may not reach the warm zone raw: use warm: pseudonymise or drop")
        if self.personal_data == "special" and self.warm == "keep":
            raise ValueError("special-category data reaches warm only coarsened or not at all: use generalise or drop")
        return self

    @property
    def lossy(self) -> bool:
        return self.warm in LOSSY


class ExpectationSpec(Strict):
    type: str = Field(description="A Great Expectations expectation, by its snake_case name, e.g. "
                      "expect_column_values_to_be_between, or a datazones one such as "
                      "expect_netto_to_equal_brutto_minus_skatt.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Its arguments, e.g. {column: x, min_value: 0, "
                                   "mostly: 0.99}. Checked against the expectation when zones.yaml is loaded.")
    severity: Severity | None = Field(None, description="block: the batch is not committed; warn: commit and "
                                      "record; quarantine: failing rows go to quarantine (row-level expectations "
                                      "only) and, with `mostly`, the batch is blocked when more rows fail.")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        """``- expect_x: {kwargs}`` (plus an optional ``severity:``) is the short form of ``type``/``kwargs``."""
        if isinstance(data, dict) and "type" not in data:
            names = [k for k in data if k != "severity"]
            if len(names) == 1 and str(names[0]).startswith("expect_"):
                return {"type": names[0], "kwargs": data[names[0]] or {},
                        **({"severity": data["severity"]} if "severity" in data else {})}
        return data


class Quality(Strict):
    severity: Severity = Field("quarantine", description="Severity of the checks derived from the column "
                               "declarations (key, type and table checks always block or quarantine as fits).")
    expectations: list[ExpectationSpec] = Field(default_factory=list, description="Extra expectations for the "
                                                "promote suite, any GX expectation by name with its kwargs.")


class FromClock(Strict):
    keep: Dur = Field(description="ISO-8601 duration the rows stay in this zone, e.g. P13M.")
    from_: Ident | None = Field(None, alias="from", description="Column the clock starts from (a date or "
                                "timestamp, e.g. an event such as `avslutat`); default: the business date. "
                                "Rows where it is null are not yet due.")


class Preserve(Strict):
    action: Literal["preserve"] = Field(description="Keep the archive package for ever (the default of archival law).")
    basis: str | None = Field(None, description="Why (optional for preservation).")


class Dispose(Strict):
    action: Literal["dispose"] = Field(description="Dispose of (gallra) the package after `after`.")
    after: Dur = Field(description="ISO-8601 duration from the end of the package period.")
    basis: str = Field(min_length=3, description="Required: the regulation or decision that allows disposal "
                       "(RA-FS, RA-MS or a special law). A basis with the word 'placeholder' in it, e.g. "
                       "'RA-MS (placeholder)', marks a decision not yet cited: its packages are never disposed.")

    @property
    def placeholder(self) -> bool:
        """The basis says it is not yet the decision itself: nothing may be disposed under it."""
        return "placeholder" in self.basis.casefold()


class Retention(Strict):
    hot: FromClock = Field(description="How long rows stay in the hot store after promotion to warm.")
    warm: FromClock = Field(description="How long rows stay in warm before they are archived to cold.")
    cold: Annotated[Preserve | Dispose, Field(discriminator="action")] = Field(
        description="preserve, or dispose after a duration under a cited basis.")


class ArchivePolicy(Strict):
    period: Literal["year", "month"] = Field("year", description="One information package per dataset and period "
                                              "of the business date.")
    secrecy: Dur = Field(Duration(years=70), description="Secret until = end of period + this (OSL 28 kap. 1 §: "
                         "at most 70 years for social insurance).")


class Dataset(Strict):
    table: Ident = Field(description="Source table in the hot store.")
    schema_: Ident | None = Field(None, alias="schema", description="Schema of the source table (default: the "
                                  "hot store's `schema`).")
    description: str = Field("", description="What the records are.")
    owner: str = Field(description="Accountable owner (a role or team).")
    steward: str = Field(description="Data steward to ask about meaning and quality.")
    domain: str = Field("", description="Business domain, e.g. sjukförsäkring.")
    primary_key: list[Ident] = Field(min_length=1, description="Column(s) identifying a row.")
    watermark: Ident = Field(description="Last-modified column (timestamp) used for incremental promotion.")
    business_date: Ident = Field(description="Date column that places a row in a business period (partitions, "
                                 "retention clocks).")
    partition_by: Literal["year", "month", "none"] = Field("year", description="Warm partitioning by business period.")
    on_new_column: Literal["add", "ignore", "fail"] = Field(
        "add", description="A hot column not declared here: add it to warm (as unclassified), ignore it, or fail.")
    batch_rows: int | None = Field(None, gt=0, description="Rows per extract batch (default: defaults.batch_rows).")
    columns: dict[Ident, Column] = Field(description="Every column with its personal-data class and warm policy.")
    retention: Retention = Field(description="Retention per zone.")
    archive: ArchivePolicy = Field(default_factory=ArchivePolicy)  # type: ignore[arg-type]
    quality: Quality = Field(default_factory=Quality)  # type: ignore[arg-type]
    case_key: Ident | None = Field(None, description="Column holding the case id: case holds resolve through it.")
    person_key: Ident | None = Field(None, description="Column holding the person key (see `persons`): person "
                                     "holds resolve through it.")

    @model_validator(mode="after")
    def _refs(self) -> Dataset:
        declared = set(self.columns)
        for role, names in (("primary_key", self.primary_key), ("watermark", [self.watermark]),
                            ("business_date", [self.business_date])):
            for n in names:
                if n not in declared:
                    raise ValueError(f"{role} column {n!r} is not declared under `columns`")
                if role != "watermark" and self.columns[n].warm not in ("keep", "pseudonymise"):
                    raise ValueError(f"{role} column {n!r} must reach warm (warm: keep or pseudonymise)")
        if self.columns[self.watermark].warm != "keep" or self.columns[self.business_date].warm != "keep":
            raise ValueError("the watermark and business_date columns must be kept in warm (warm: keep)")
        for role, col in (("case_key", self.case_key), ("person_key", self.person_key)):
            if col and col not in declared:
                raise ValueError(f"{role} column {col!r} is not declared under `columns`")
        for zone in ("hot", "warm"):
            clock = getattr(self.retention, zone).from_
            if clock and clock not in declared:
                raise ValueError(f"retention.{zone}.from column {clock!r} is not declared under `columns`")
        return self

    @property
    def clock_column(self) -> str:
        return self.retention.warm.from_ or self.business_date


class HotStore(Strict):
    url: str = Field("sqlite:///.datazones/hot.db", description="SQLAlchemy URL of the operational store. "
                     "Env: DATAZONES__HOT__URL. Relative SQLite paths are relative to zones.yaml.")
    schema_: Ident | None = Field(None, alias="schema", description="Default schema of the source tables.")


class LocalStorage(Strict):
    provider: Literal["local"] = Field(description="A folder on local disk.")
    path: str = Field(description="Folder (relative paths are relative to zones.yaml).")


_SECRETISH = re.compile(r"secret|password|token|session", re.I)


class S3Storage(Strict):
    provider: Literal["s3"] = Field(description="An S3-compatible bucket (AWS, MinIO).")
    uri: str = Field(pattern=r"^s3a?://[^/]+(/.*)?$", description="s3://bucket/prefix")
    storage_options: dict[str, OptionText] = Field(default_factory=dict, description="delta-rs/object_store options "
                                            "(endpoint, region, allow_http). Credentials come from the "
                                            "environment (AWS_ACCESS_KEY_ID, ...), never from this file.")

    @model_validator(mode="after")
    def _no_secrets(self) -> S3Storage:
        bad = [k for k in self.storage_options if _SECRETISH.search(k)]
        if bad:
            raise ValueError(f"storage_options {bad} look like credentials; set them in the environment "
                             "(AWS_SECRET_ACCESS_KEY, ...) or a secret backend, not in zones.yaml")
        return self


Storage = Annotated[LocalStorage | S3Storage, Field(discriminator="provider")]


class LedgerStore(Strict):
    url: str = Field("sqlite:///.datazones/ledger.db", description="SQLAlchemy URL of the ledger (batches, "
                     "watermarks, hash-chained events). Env: DATAZONES__LEDGER__URL.")


class Defaults(Strict):
    batch_rows: int = Field(400_000, gt=0, description="Rows per extract batch (memory grows with it: about "
                            "four batches are in flight while extract, transform and commit overlap).")
    settle_lag: Dur = Field(Duration(seconds=120), description="Rows modified less than this long before the run "
                            "are left for the next run, so rows of transactions still open are not skipped.")
    lookback: Dur = Field(Duration(seconds=3600), description="Each incremental run re-reads this window before "
                          "the stored watermark; MERGE makes re-read rows harmless, late commits are caught.")


class Agency(Strict):
    name: str = Field(description="Name of the agency (archive creator).")
    org_id: str | None = Field(None, description="Organisationsnummer.")


class Persons(Strict):
    dataset: Ident = Field(description="The dataset listing people, e.g. individ.")
    identifier: Ident = Field(description="Its identity-number column, e.g. personnummer.")
    key: Ident = Field(description="Its person key, the value other datasets' person_key holds, e.g. individ_id.")


class ZonesConfig(Strict):
    version: Literal[1] = Field(description="Config format version.")
    agency: Agency | None = None
    hot: HotStore = Field(default_factory=HotStore)  # type: ignore[arg-type]
    warm: Storage = Field(default_factory=lambda: LocalStorage(provider="local", path=".datazones/warm"))
    cold: Storage = Field(default_factory=lambda: LocalStorage(provider="local", path=".datazones/cold"))
    ledger: LedgerStore = Field(default_factory=LedgerStore)  # type: ignore[arg-type]
    defaults: Defaults = Field(default_factory=Defaults)  # type: ignore[arg-type]
    datasets: dict[Ident, Dataset] = Field(min_length=1)
    persons: Persons | None = Field(None, description="How a person hold given by personnummer finds the person key.")
    archivists: list[str] = Field(default_factory=list, description="Who may plan and approve disposal "
                                  "(gallring), as `--by` names them. Empty: any name, recorded as given; set, a "
                                  "name not listed is refused when planning, approving and executing.")

    def dataset(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            raise KeyError(f"no dataset {name!r}; declared: {', '.join(sorted(self.datasets))}") from None
