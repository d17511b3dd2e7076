"""What the self-contained HTML pages share (the drift report, the county bulletin, the
Forecasts view): one way to load their Jinja templates — from the package that owns the page,
every value escaped, a name missing from the context an error rather than an empty cell."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2


@functools.cache
def template(package: str, name: str) -> jinja2.Template:
    """The template ``name`` of ``package``'s ``templates/`` folder (loaded once)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template(name)
