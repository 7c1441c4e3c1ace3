"""The API benchmark's server settings: the project's, with an exact-cache TTL for the chat
feature (off by default) so cache hits through the API can be measured."""

from saas.settings import *  # noqa: F403
from saas.settings import AI_CACHE_TTL_BY_FEATURE

AI_CACHE_TTL_BY_FEATURE = {**AI_CACHE_TTL_BY_FEATURE, "chat": 3600}
