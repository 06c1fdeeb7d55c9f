"""callbacks-openinference: every callbacks trace as OpenTelemetry spans following the
OpenInference semantic conventions (Phoenix, Arize or any OTLP collector)."""

from .context import using_attributes, using_metadata, using_session, using_tags, using_user
from .plugin import OpenInferencePlugin
from .settings import OpenInferenceSettings

__all__ = [
    "OpenInferencePlugin",
    "OpenInferenceSettings",
    "using_attributes",
    "using_metadata",
    "using_session",
    "using_tags",
    "using_user",
]
