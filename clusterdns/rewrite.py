"""Placeholder: the rewrite plugin is being written (issue 13)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Reader


def parse_rewrite(r: Reader, *args: Any) -> Any:
    """Not yet supported."""
    from .config import not_supported

    raise not_supported(r)
RewriteRule = Any


class Rewriter:
    """Placeholder."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def answer(self, *args: Any) -> Any:
        """Placeholder."""
        return None

    def rewrite(self, *args: Any) -> Any:
        """Placeholder."""
        return None
