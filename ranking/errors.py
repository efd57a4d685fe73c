"""The project's exception types, re-exported for the ranking layer (defined in ``encoders.errors``)."""

from encoders.errors import ConfigError, DataError, EncoderError, TandemError

__all__ = ["ConfigError", "DataError", "EncoderError", "TandemError"]
