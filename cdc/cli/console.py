"""The consoles every ``cdc`` command prints through: rich's, except that nothing is cut when the
output is not a terminal.

Without a terminal rich assumes 80 columns, and a table wider than that has its cells wrapped
and long words cut with an ellipsis ("custo…"): a log file, a pipe into ``grep`` or a CI job
would read shortened names. This console keeps the terminal's width on a terminal and takes
:data:`PIPED_WIDTH` columns otherwise, so tables are only as wide as their content. It decides
at each print (``cdc`` commands print to whatever ``sys.stdout`` is then, e.g. a test runner's
buffer), and ``COLUMNS`` can make it wider, never narrower than that, when not on a terminal.
"""

from __future__ import annotations

from rich.console import Console as RichConsole
from rich.console import ConsoleDimensions

PIPED_WIDTH = 10_000  # columns when not a terminal: wider than any table the CLI prints


class Console(RichConsole):
    """A rich Console that is :data:`PIPED_WIDTH` wide when it does not write to a terminal."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.is_terminal:
            return size
        return ConsoleDimensions(max(size.width, PIPED_WIDTH), size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size  # as rich's own setter does
