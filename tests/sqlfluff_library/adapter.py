"""Stand-in for dbt's `adapter.dispatch` under sqlfluff: resolves to our `postgres__` (else
`default__`) implementation among the macros sqlfluff loaded from macros/."""

from jinja2 import pass_context


@pass_context
def dispatch(context, macro_name, macro_namespace=None):
    for prefix in ("postgres__", "default__"):
        implementation = context.get(prefix + macro_name)
        if implementation is not None:
            return implementation
    raise LookupError(f"no postgres__/default__ implementation of {macro_name}")
