"""Errors about an uploaded image or its parameters (all are the client's fault)."""

from __future__ import annotations

from imgproc.errors import ServiceError


class ImageError(ServiceError):
    """The image cannot be processed; as a job failure it is permanent (no retry)."""

    status_code = 422
    code = "invalid_image"


class UnsupportedImage(ImageError):
    status_code = 415
    code = "unsupported_image"


class TruncatedImage(ImageError):
    code = "truncated_image"


class UploadTooLarge(ImageError):
    status_code = 413
    code = "upload_too_large"


class TooManyPixels(ImageError):
    # 422 like imgproxy: the request is well formed, the image is too big to process.
    code = "too_many_pixels"


class ParameterError(ServiceError):
    status_code = 422
    code = "invalid_parameters"
