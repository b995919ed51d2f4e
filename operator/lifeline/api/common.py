"""Types shared by every kind: durations, cron schedules, tiers, conditions.

These are the building blocks of the CRD schemas too, so each carries the
constraint the API server can check (a pattern, a bound) and the model adds the
checks it cannot (a cron expression really parses).
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from croniter import croniter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from lifeline.hidden_text import BIDI_MARKS
from lifeline.key_refs import connection_settings_in

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``5m``, ``1h30m`` or ``7d``."""
    if not re.fullmatch(DURATION_PATTERN, text or ""):
        raise ValueError(
            f"'{text}' is not a duration: write a number and a unit, "
            "for example 30s, 5m, 2h, 1h30m or 7d (units: ms, s, m, h, d)"
        )
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest duration string for a whole number of seconds (``90`` -> ``1m30s``)."""
    seconds = int(round(seconds))
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


MAX_DURATION_SECONDS = 3650 * 86400  # ten years: longer is a typo (and overflows what clocks add up)


def _check_duration(text: str) -> str:
    if parse_duration(text) > MAX_DURATION_SECONDS:
        raise ValueError(f"'{text}' is longer than ten years (3650d): write a shorter duration")
    return text


_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _check_cron(text: str) -> str:
    # CronJob takes five fields or a macro; croniter alone would also take a seconds field.
    shape_ok = text.strip() in _CRON_MACROS or len(text.split()) == 5
    if not shape_ok or not croniter.is_valid(text):
        raise ValueError(
            f"'{text}' is not a cron schedule: write five fields "
            "(minute hour day-of-month month day-of-week), for example '*/15 * * * *', "
            "or a macro such as @hourly or @daily"
        )
    return text


Duration = Annotated[
    str,
    # The pattern is for the API server; the model's own check gives the friendlier message.
    Field(max_length=32, json_schema_extra={"pattern": DURATION_PATTERN}),
    AfterValidator(_check_duration),
]
"""A duration written as a string: ``30s``, ``5m``, ``2h``, ``1h30m``, ``7d``."""

Cron = Annotated[str, Field(min_length=1), AfterValidator(_check_cron)]


def _check_key_ref(ref: str) -> str:
    found = connection_settings_in(ref)
    if found:
        raise ValueError(f"a key reference in a Lifeline object may not set {', '.join(found)}: Vault's address, "
                         "namespace, auth method and CA are the operator's settings (chart values vault.*), "
                         "so that nobody who can write a policy can send the operator's credentials elsewhere")
    return ref


# A key reference written into a Lifeline object: it names a key, never where Vault is (docs/security.md).
KeyRef = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_check_key_ref)]
"""A five-field cron expression or macro, as a CronJob takes it."""

DNSLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
DNSName = Annotated[
    str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253)
]

Tier = Literal["A", "B", "C"]


class TierDefaults(BaseModel):
    """What a tier promises when a policy does not say otherwise."""

    model_config = ConfigDict(frozen=True)

    rpo: str
    rto: str
    drill_schedule: str
    drill_rhythm: str


TIER_DEFAULTS: dict[str, TierDefaults] = {
    # life-critical: ICU monitoring, the core HIS database
    "A": TierDefaults(rpo="10s", rto="5m", drill_schedule="0 3 1 * *", drill_rhythm="monthly"),
    # diagnosis and treatment: PACS, LIS
    "B": TierDefaults(rpo="1m", rto="30m", drill_schedule="0 3 1 */3 *", drill_rhythm="quarterly"),
    # management and reporting
    "C": TierDefaults(rpo="5m", rto="2h", drill_schedule="0 3 1 */6 *", drill_rhythm="half-yearly"),
}


# Text that would let a name or a message lie about itself on a screen: control characters
# (NUL ...) and Unicode's bidirectional formatting marks (U+202E turns "gpj.exe" around).
_HIDDEN = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f{BIDI_MARKS}]")
MAX_TEXT = 4096  # any one string in a spec; names have their own, smaller bounds


def _plain_text(value):
    """Refuse hidden characters and over-long strings anywhere in a field's value."""
    if isinstance(value, BaseModel):
        return value
    if isinstance(value, str):
        found = _HIDDEN.search(value)
        if found:
            raise ValueError(f"contains the control or bidirectional-formatting character "
                             f"U+{ord(found.group()):04X}: write plain text")
        if len(value) > MAX_TEXT:
            raise ValueError(f"is {len(value)} characters long; at most {MAX_TEXT} are accepted")
    elif isinstance(value, dict):  # maps and lists of plain values; nested models check their own fields
        for k, v in value.items():
            _plain_text(k)
            _plain_text(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _plain_text(v)
    return value


class Model(BaseModel):
    """Base for every API object part: camelCase on the wire, unknown fields refused, plain text."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_hidden_text(cls, value):
        return _plain_text(value)

    def wire(self) -> dict:
        """The object as the API server stores it: camelCase, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Objectives(Model):
    """Recovery objectives; each one left out comes from the tier."""

    rpo: Duration | None = Field(None, description="Recovery point objective: how much data may be lost.")
    rto: Duration | None = Field(None, description="Recovery time objective: how long a recovery may take.")


class SecretKeyRef(Model):
    """A key inside a Secret in the object's own namespace."""

    name: DNSName = Field(description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key within the Secret.")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """A Kubernetes condition in the standard (metav1.Condition) shape."""

    type: str = Field(min_length=1, description="Condition type, for example Ready.")
    status: ConditionStatus
    reason: str = Field(min_length=1, description="One CamelCase word a machine can act on.")
    message: str = Field("", description="What happened and what to do about it, for a person.")
    last_transition_time: datetime | None = Field(None, description="When status last changed.")
    observed_generation: int | None = Field(None, ge=0, description="The generation this condition is about.")


class StatusBase(Model):
    """What every kind's status has: the generation seen and the conditions."""

    observed_generation: int | None = Field(None, ge=0, description="The metadata.generation last reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Current conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def exactly_one(obj: BaseModel, fields: tuple[str, ...], what: str) -> None:
    """Raise when not exactly one of ``fields`` is set, naming the ones that are."""
    chosen = [f for f in fields if getattr(obj, f) is not None]
    if len(chosen) != 1:
        names = ", ".join(to_camel(f) for f in fields)
        got = ", ".join(to_camel(f) for f in chosen) or "none"
        raise ValueError(f"set exactly one {what} ({names}); got {got}")


def one_of_rule(fields: tuple[str, ...], what: str) -> dict:
    """The same rule as :func:`exactly_one`, as a CEL validation for the API server."""
    has = ", ".join(f"has(self.{to_camel(f)})" for f in fields)
    return {
        "rule": f"[{has}].filter(x, x).size() == 1",
        "message": f"set exactly one {what}: " + ", ".join(to_camel(f) for f in fields),
    }


def _one_of_schema(schema: dict, cls) -> None:
    schema.setdefault("x-kubernetes-validations", []).append(one_of_rule(cls.one_of, cls.choice))


class OneOf(Model):
    """A choice of kinds: exactly one of the fields named in ``one_of`` is set (``choice`` names it in
    messages). The model checks it, and the CRD carries the same rule for the API server."""

    one_of: ClassVar[tuple[str, ...]]
    choice: ClassVar[str]

    model_config = ConfigDict(json_schema_extra=_one_of_schema)

    @model_validator(mode="after")
    def _one_kind(self):
        exactly_one(self, self.one_of, self.choice)
        return self


class TierObjectives:
    """The objectives in seconds of a spec with a ``tier`` and its ``objectives``: each as written, else the tier's."""

    @property
    def rpo_seconds(self) -> float:
        return parse_duration(self.objectives.rpo or TIER_DEFAULTS[self.tier].rpo)

    @property
    def rto_seconds(self) -> float:
        return parse_duration(self.objectives.rto or TIER_DEFAULTS[self.tier].rto)
