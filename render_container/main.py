"""The render service's source for functions-framework (``--source``): the
handler lives in ``povstorm.shells.render_service``."""

from povstorm.shells.render_service import handle_push

__all__ = ["handle_push"]
