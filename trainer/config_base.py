"""What every settings section shares: the caps no run needs (MAX_*), the seed range, and `_Section`,
the base model that refuses unknown keys, inf and nan, and booleans where numbers go.

Importable without torch (trainer.config, trainer.config_data and the job contract build on it).
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# Hard caps: what no run needs, local or in the service, so that no value (a YAML typo, a request)
# can ask for unbounded memory or time. They are generous for real local use (COCO at 608 px, batch
# 64, 300 epochs fit well within them); a service applies tighter limits an operator may raise
# (service.settings.JobLimits).
MAX_PIXELS = 8192  # any box or anchor side, pixels at the input size (4x the largest input)
MAX_IMAGES = 100_000  # synthetic images per split: each is rendered and kept in memory
MAX_STEPS = 10_000_000  # any count of optimizer steps
MAX_EPOCHS = 10_000
MAX_WEIGHT = 10_000.0  # loss and clustering weights
# Seeds (`seed`, `anchors.seed`): what every generator the run seeds accepts. numpy's SeedSequence
# and default_rng refuse negatives (a run with seed -1 failed: "expected non-negative
# integer"); the data order's torch generator is seeded with seed * 100_003 + epoch, which must fit
# 64 bits (2**63 - 1 and 2**64 failed: "Overflow when unpacking long long"); numpy's legacy
# RandomState takes only 0 <= seed < 2**32, the range every one of them accepts.
SEED = {"ge": 0, "lt": 2**32}
Side = Annotated[float, Field(gt=0, le=MAX_PIXELS)]  # an anchor's width or height in pixels


def _numeric(annotation: Any) -> bool:
    """Whether a field's type takes numbers and not booleans (int, float, their lists, optionals)."""
    if annotation in (int, float):
        return True
    args = [a for a in get_args(annotation) if a is not type(None)]
    return bool(args) and bool not in args and any(_numeric(a) for a in args)


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, list | tuple) and any(_holds_bool(v) for v in value)


class _Section(BaseModel):
    # Unknown keys are errors, so a typo in a YAML file or a --set is never silently ignored.
    # inf and nan are refused everywhere: YAML's .inf and JSON's Infinity would pass `lr > 0`, and
    # a stored spec would not read back (JSON has no inf: it is written as null).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic would take true as 1 (`--set optim.epochs=true`, `{"epochs": true}`); a boolean
        # where a number goes is a mistake. A float with a fraction for an integer is refused by
        # pydantic itself ("got a number with a fractional part").
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _numeric(field.annotation) and _holds_bool(value):
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
            raise ValueError(f"expected numbers, found a boolean in {value!r}")
        return value
