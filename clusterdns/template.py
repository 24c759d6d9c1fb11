"""Placeholder: the template plugin is being written (issue 13)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Reader


def parse_template(r: Reader, *args: Any) -> Any:
    """Not yet supported."""
    from .config import not_supported

    raise not_supported(r)
TemplateConfig = Any


class Template:
    """Placeholder."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def answer(self, *args: Any) -> Any:
        """Placeholder."""
        return None

    def rewrite(self, *args: Any) -> Any:
        """Placeholder."""
        return None
