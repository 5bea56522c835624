"""Operations and their parameters, with the normal form used for de-duplication."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_SIDE = 10_000
MAX_OFFSET = 1_000_000

Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET)]


class Operation(StrEnum):
    CROP = "crop"
    GRAYSCALE = "grayscale"
    RESIZE = "resize"


class ResampleFilter(StrEnum):
    NEAREST = "nearest"
    BOX = "box"
    BILINEAR = "bilinear"
    HAMMING = "hamming"
    BICUBIC = "bicubic"
    LANCZOS = "lanczos"


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CropParams(_Params):
    """A box in the upright image (after EXIF orientation), in pixels."""

    left: Offset = Field(description="x of the box's left edge")
    top: Offset = Field(description="y of the box's top edge")
    width: Side
    height: Side


class GrayscaleParams(_Params):
    """Grayscale takes no parameters."""


class ResizeParams(_Params):
    """Target width and/or height; with keep_aspect both together mean "fit inside"."""

    width: Side | None = None
    height: Side | None = None
    keep_aspect: bool = True
    filter: ResampleFilter = ResampleFilter.LANCZOS

    @model_validator(mode="after")
    def _one_side_at_least(self) -> Self:
        if self.width is None and self.height is None:
            raise ValueError("give width, height or both")
        return self

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Return the output size for an upright input of `width` x `height`."""
        if self.width is not None and self.height is not None:
            if not self.keep_aspect:
                return self.width, self.height
            scale = min(self.width / width, self.height / height)
            return max(1, round(width * scale)), max(1, round(height * scale))
        if self.width is not None:
            new_h = max(1, round(height * self.width / width)) if self.keep_aspect else height
            return self.width, new_h
        assert self.height is not None  # guaranteed by _one_side_at_least
        new_w = max(1, round(width * self.height / height)) if self.keep_aspect else width
        return new_w, self.height


OperationParams = CropParams | GrayscaleParams | ResizeParams

PARAMS_BY_OPERATION: dict[Operation, type[_Params]] = {
    Operation.CROP: CropParams,
    Operation.GRAYSCALE: GrayscaleParams,
    Operation.RESIZE: ResizeParams,
}


def canonical_params(params: OperationParams) -> str:
    """Return the normal form of `params`: defaults filled in, keys sorted, no spaces."""
    return json.dumps(params.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def parse_params(operation: Operation, raw: dict[str, object]) -> OperationParams:
    """Rebuild typed parameters from a job row's JSON."""
    model = PARAMS_BY_OPERATION[operation]
    parsed = model.model_validate(raw)
    assert isinstance(parsed, CropParams | GrayscaleParams | ResizeParams)
    return parsed
